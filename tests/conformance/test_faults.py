"""Each family catches a broken target: one injected fault fails that family, and only
families the fault can sensibly touch (compared with the same target without it)."""

import pytest

from pagefs.conformance import targets
from pagefs.conformance.families import family_of
from pagefs.conformance.faults import BREAKS, FAULTS, MEASURED_FAULTS, ON_PAGEFS, inject
from pagefs.conformance.measured import measured_fault
from pagefs.conformance.report import FAIL
from pagefs.conformance.runner import ALL, run

DATA = set(family_of("COH-READ").properties)


def _failing(factory, budget, properties=ALL) -> set[str]:
    return {v.property for v in run(factory, properties, **budget).verdicts
            if v.result == FAIL}


@pytest.fixture(scope="module")
def local_baseline(budget):
    with targets.factory("local") as factory:
        return _failing(factory, budget)


@pytest.mark.parametrize(("fault", "expected", "family"), [
    ("stale-read", "COH-READ", DATA),
    ("lost-store", "COH-WRITE", DATA),
    ("missed-eof-fault", "EOF-FAULT", DATA),
    ("writable-ro-mapping", "RO-EXPORT", {"RO-EXPORT"}),
    # The wrapper numbers handles itself, so HANDLE applies to it even over `local`.
    ("reused-handle", "HANDLE", set(family_of("HANDLE").properties)),
])
def test_a_fault_in_local_fails_its_family_only(fault, expected, family, budget,
                                                local_baseline):
    with targets.factory("local") as base:
        failing = _failing(inject(base, fault), budget)
    assert expected in failing
    assert failing - local_baseline <= family


def test_the_unbroken_local_target_passes_the_data_family(budget):
    with targets.factory("local") as factory:
        assert not _failing(factory, budget, sorted(DATA))


def test_a_session_the_host_never_reclaims_fails_reclaim_on_pagefs(budget):
    # Each failing case waits for the daemon's cleanup before it says so: keep it short.
    quick = {**budget, "examples": 3, "shrink_seconds": 3.0}
    with targets.factory("pagefs") as base:
        assert not _failing(base, quick, ["RECLAIM"])
        assert _failing(inject(base, "leaked-session"), quick, ["RECLAIM"]) == {"RECLAIM"}


# Every named property has a fault that fails it; the stepped ones on `local`, except
# those whose property needs what only a daemon has (ON_PAGEFS: RECLAIM's host side counts
# the daemon's descriptors, NODEID needs the target's own nodeids, CONFINE a host side
# apart from the guest's).
CAUGHT_BY = BREAKS
FOCUSED = {"examples": 20, "steps": 20, "seed": 0, "shrink_seconds": 5.0,
           "show_progress": False}


def test_every_fault_names_the_property_it_breaks():
    assert set(CAUGHT_BY) == set(FAULTS)


def _base(fault: str) -> str:
    return "pagefs" if fault in ON_PAGEFS else "local"


@pytest.mark.parametrize("fault", ["foreign-read", "stale-attrs", "rw-behind-ro",
                                   "release-unmaps", "lax-unlink"])
def test_a_fault_fails_its_own_property(fault):
    with targets.factory("local") as base:
        assert _failing(inject(base, fault), FOCUSED, [CAUGHT_BY[fault]]) == {CAUGHT_BY[fault]}


@pytest.mark.parametrize("fault", ["peer-blind", "stale-nodeid", "dotdot-escape",
                                   "ignored-caller"])
def test_a_fault_fails_its_property_alone_in_its_family(fault):
    """The property fails, and no other of its family does: the departure is named after
    the property it breaks (the others are at most inconclusive)."""
    prop = CAUGHT_BY[fault]
    family = [p for p in family_of(prop).properties if p != "RECLAIM"]
    with targets.factory(_base(fault)) as base:
        assert _failing(inject(base, fault), FOCUSED, family) == {prop}


def test_pagefs_unbroken_passes_ownership():
    """OWNERSHIP needs requests as a chosen user (a local syscall view has none), so its
    fault (ignored-caller) wraps pagefs, which passes it unbroken."""
    with targets.factory("pagefs") as base:
        assert not _failing(base, FOCUSED, ["OWNERSHIP"])


@pytest.mark.parametrize(("fault", "prop"), sorted(MEASURED_FAULTS.items()))
def test_a_measured_property_fails_under_its_fault(fault, prop):
    v = measured_fault(fault)
    assert (v.property, v.result) == (prop, FAIL), v.detail


@pytest.mark.slow
def test_the_catch_table():
    """Each fault, every property: caught by its own (printed with what else caught it)."""
    rows = []
    for fault, prop in CAUGHT_BY.items():
        with targets.factory(_base(fault)) as base:
            failing = _failing(inject(base, fault), FOCUSED)
        rows.append((fault, prop, failing))
    for fault, prop in MEASURED_FAULTS.items():
        rows.append((fault, prop, {prop} if measured_fault(fault).result == FAIL else set()))
    print("\nfault                 its property  caught by")
    for fault, prop, failing in rows:
        print(f"{fault:21} {prop:13} {', '.join(sorted(failing)) or '-'}")
    assert all(prop in failing for _, prop, failing in rows)
