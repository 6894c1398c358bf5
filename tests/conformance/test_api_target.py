"""The guest driver users call, judged: `pagefs-api` conforms, and each seeded bug in the
driver fails a property (the bug's catch table is printed)."""

import os

import pytest

from pagefs.conformance import targets
from pagefs.conformance.driver_faults import broken_api
from pagefs.conformance.report import FAIL, NA, PASS
from pagefs.conformance.runner import judge, run
from pagefs.conformance.target import RACES, TargetFactory

PAGE = 4096

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
    # Only a read the host truncates mid-copy meets it (RacingMachine's rule).
    ("inexact-fault-count", {"EOF-FAULT"}),
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


def _read_across_truncate(factory: TargetFactory, offset: int, end: int) -> tuple[bytes, list]:
    """A file of three pages and more; a read of three pages from `offset`, which the host
    truncates to `end` while it copies. Returns what the read gave and the file's size
    each time the truncate ran (once, in the middle of the read)."""
    target = factory.start()
    try:
        guest = target.connect()
        target.host.create(b"a")
        target.host.write(b"a", 0, bytes(range(1, 251)) * 60)
        fh = guest.open(guest.lookup(1, b"a").nodeid, os.O_RDONLY)
        truncated: list[int] = []

        def truncate() -> None:
            truncated.append(target.host.stat(b"a").st_size)
            target.host.truncate(b"a", end)
        data = guest.read_across_truncate(fh, offset, 3 * PAGE, truncate)
        guest.release(fh)
        return data, truncated
    finally:
        target.close()


@pytest.mark.parametrize(("offset", "end"), [(0, 100), (1, 5000), (PAGE + 3, 2 * PAGE - 1),
                                             (100, 9000), (PAGE, PAGE)])
def test_a_read_the_host_truncates_mid_copy_ends_exactly_at_the_new_end(offset, end):
    """The driver's first window range (two pages) is copied before the host truncates;
    the rest faults, and the read gives what lies before the new end, not the pages it
    copied whole. The seeded inexact-fault-count driver keeps the whole copied count."""
    with targets.factory("pagefs-api") as factory:
        assert RACES in factory.capabilities
        data, truncated = _read_across_truncate(factory, offset, end)
    assert truncated == [15000]  # once, before the read could end
    assert data == (bytes(range(1, 251)) * 60)[offset:end]
    with broken_api("inexact-fault-count") as factory:
        data, _ = _read_across_truncate(factory, offset, end)
    copied_before_the_fault = -(-max(end, 2 * PAGE) // PAGE) * PAGE - offset
    assert len(data) == copied_before_the_fault != end - offset


def test_a_fault_count_kept_whole_is_caught_by_eof_fault():
    with broken_api("inexact-fault-count") as factory:
        report = run(factory, ["EOF-FAULT"], examples=5, steps=20, seed=0,
                     shrink_seconds=3.0, show_progress=False)
    verdict = report.verdicts[0]
    assert verdict.result == FAIL, report.table()
    assert any("during this READ" in line for line in verdict.trace), verdict.trace


def test_a_target_that_cannot_time_the_truncate_says_that_part_is_not_judged():
    with targets.factory("local") as factory:
        assert RACES not in factory.capabilities
        verdict = judge(factory, "EOF-FAULT", examples=1, steps=3, seed=0)
    assert "read the host truncates mid-copy" in verdict.detail
    assert "n/a" in verdict.detail, verdict
