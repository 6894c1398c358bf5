"""The guest driver users call, judged: `pagefs-api` conforms, and each seeded bug in the
driver fails a property (the bug's catch table is printed)."""

import pytest

from pagefs.conformance import targets
from pagefs.conformance.driver_faults import broken_api
from pagefs.conformance.report import FAIL, NA, PASS
from pagefs.conformance.runner import run

DATA = ["COH-READ", "COH-WRITE", "EOF-FAULT", "ISOLATION"]


@pytest.mark.slow  # ~95 s on 2 cores: a conformance run of the guest API
def test_the_guest_api_conforms_where_it_applies(budget):
    with targets.factory("pagefs-api") as factory:
        report = run(factory, [*DATA, "COH-PEER", "LIFETIME", "HANDLE", "CONFINE"], **budget)
    by = {v.property: v for v in report.verdicts}
    for p in [*DATA, "COH-PEER"]:
        assert by[p].result == PASS and by[p].judged > 0, by[p]
    # A FORGET the suite sends while a Handle uses the nodeid waits for the Handle (the
    # driver never forgets a nodeid in use), so a later LOOKUP may get the same nodeid
    # where the spec gives a new one: a NODEID matter (n/a here) that can cut a case.
    assert by["LIFETIME"].result != FAIL and by["LIFETIME"].judged > 0, by["LIFETIME"]
    # What the path API cannot express is n/a, and says why.
    assert by["HANDLE"].result == NA and "Handle objects" in by["HANDLE"].detail
    assert by["CONFINE"].result == NA and "guest API" in by["CONFINE"].detail


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "caught_by"), [
    ("reclaim-pinned", {"EOF-FAULT", "COH-READ", "ISOLATION", "LIFETIME"}),
    ("pread-past-eof", {"COH-READ"}),
    # The data scene maps each file range read-only, then writable: the first STORE faults.
    ("no-upgrade", {"EOF-FAULT", "COH-WRITE", "LIFETIME"}),
    ("probe-last-byte", {"COH-READ", "EOF-FAULT"}),
    # The C fast read serves Handle.pread from the books: a range entered under the
    # wrong file range gives another range's bytes.
    ("books-off-by-one", {"COH-READ"}),
])
def test_a_seeded_driver_bug_fails_a_property(fault, caught_by):
    with broken_api(fault) as factory:
        report = run(factory, [*DATA, "LIFETIME"], examples=40, steps=25, seed=0,
                     shrink_seconds=10.0, show_progress=False)
    failing = {v.property for v in report.verdicts if v.result == FAIL}
    print(f"\n{fault}: caught by {', '.join(sorted(failing)) or 'nothing'}")
    assert failing & caught_by, report.table()


def test_a_read_mapping_never_upgraded_for_a_writable_one_is_caught():
    """The data scene maps a file range read-only, then writable, in every case: a driver
    that keeps the read-only window range faults on the first STORE (EOF-FAULT's rule:
    a store inside the file must not fault)."""
    with broken_api("no-upgrade") as factory:
        report = run(factory, ["EOF-FAULT"], examples=3, steps=15, seed=0,
                     shrink_seconds=3.0, show_progress=False)
    assert report.verdicts[0].result == FAIL, report.table()
