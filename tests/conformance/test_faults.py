"""Each family catches a broken target: one injected fault fails that family, and only
families the fault can sensibly touch (compared with the same target without it)."""

import pytest

from pagefs.conformance import targets
from pagefs.conformance.families import family_of
from pagefs.conformance.faults import inject
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
