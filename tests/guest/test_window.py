"""The DAX window manager on a real window: ranges granted by the real host
filesystem session, the donated descriptors really mapped, loads and stores real."""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagefs.impl.guest import safemem
from pagefs.impl.guest.window import DaxWindow
from pagefs.impl.host.passthrough import PassthroughFS
from pagefs.impl.machine import PAGE_SIZE
from pagefs.spec.rules import probe_bounds_read, read_probe

from .inprocess import InProcessWindow

RANGE = 64 * 1024
RANGES = 5
FILE_SIZE = 8 * RANGE


@pytest.fixture
def export(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    root.mkdir()
    (root / "data").write_bytes(bytes(i % 251 for i in range(FILE_SIZE)))
    return root


@pytest.fixture
def setup(export: Path) -> Iterator[tuple[DaxWindow, InProcessWindow, int, int, int]]:
    fs = PassthroughFS(str(export))
    session = fs.session()
    nodeid = session.lookup(1, b"data").nodeid
    rw = session.open(nodeid, os.O_RDWR)
    ro = session.open(nodeid, os.O_RDONLY)
    frontend = InProcessWindow(session, RANGES * RANGE)
    window = DaxWindow(frontend.base, frontend.size, frontend, range_size=RANGE, reclaim_chunk=2)
    yield window, frontend, nodeid, ro, rw
    window.close()
    frontend.close()
    session.close()
    fs.close()


def test_a_mapped_range_shows_the_host_file_and_its_updates(setup, export: Path) -> None:
    window, frontend, nodeid, ro, _ = setup
    rng = window.acquire(nodeid, ro, 3 * RANGE + 100, writable=False)
    address = window.address(rng, 3 * RANGE + 100)
    assert safemem.read(address, 4) == bytes((3 * RANGE + 100 + i) % 251 for i in range(4))
    with open(export / "data", "r+b") as f:
        f.seek(3 * RANGE + 100)
        f.write(b"HOST")
    assert safemem.read(address, 4) == b"HOST"  # COH-READ, no message sent
    assert frontend.sent == [("setup", 3 * RANGE, rng.moffset, False)]


def test_one_range_per_file_range_shared_by_handles(setup) -> None:
    window, frontend, nodeid, ro, rw = setup
    a = window.acquire(nodeid, ro, RANGE + 1, writable=False)
    b = window.acquire(nodeid, rw, 2 * RANGE - 1, writable=False)
    assert a is b and a.pins == 2
    assert len(frontend.sent) == 1
    assert window.mapped(nodeid) == {RANGE: a}


def test_write_access_upgrades_the_same_window_range(setup, export: Path) -> None:
    window, frontend, nodeid, ro, rw = setup
    rng = window.acquire(nodeid, ro, 0, writable=False)
    assert safemem.write_from(window.address(rng, 0), b"x") == 0  # read-only: contained
    same = window.acquire(nodeid, rw, 10, writable=True)
    assert same is rng and rng.writable
    assert frontend.sent[-1] == ("setup", 0, rng.moffset, True)
    assert safemem.write_from(window.address(rng, 10), b"GUEST") == 5
    assert os.pread(os.open(export / "data", os.O_RDONLY), 5, 10) == b"GUEST"  # COH-WRITE


def test_read_only_handle_cannot_make_a_writable_range(setup) -> None:
    window, frontend, nodeid, ro, _ = setup
    with pytest.raises(OSError) as err:
        window.acquire(nodeid, ro, 0, writable=True)
    assert err.value.errno == errno.EACCES
    assert window.free_count() == RANGES and window.mapped(nodeid) == {}


def test_reclaim_removes_least_recently_used_unpinned_ranges_in_one_batch(setup) -> None:
    window, frontend, nodeid, ro, _ = setup
    ranges = [window.acquire(nodeid, ro, i * RANGE, writable=False) for i in range(RANGES)]
    for rng in ranges:
        window.release(rng)
    window.release(window.acquire(nodeid, ro, 0, writable=False))  # range 0 is used again
    oldest = [ranges[1], ranges[2]]
    addresses = [window.address(r, r.foffset) for r in oldest]
    fresh = window.acquire(nodeid, ro, RANGES * RANGE, writable=False)
    assert frontend.sent[-2] == ("remove", sorted(r.moffset for r in oldest))
    assert fresh.moffset in {r.moffset for r in oldest}
    assert set(window.mapped(nodeid)) == {0, 3 * RANGE, 4 * RANGE, RANGES * RANGE}
    # The range that was not handed out again is PROT_NONE: a load there is contained.
    stale = [a for a, r in zip(addresses, oldest, strict=True) if r is not fresh][0]
    assert safemem.read(stale, 8) == b""


def test_pinned_ranges_survive_reclaim_and_exhaustion_is_enomem(setup) -> None:
    window, frontend, nodeid, ro, _ = setup
    pinned = [window.acquire(nodeid, ro, i * RANGE, writable=False) for i in range(RANGES)]
    assert window.reclaim() == 0
    with pytest.raises(OSError) as err:
        window.acquire(nodeid, ro, RANGES * RANGE, writable=False)
    assert err.value.errno == errno.ENOMEM
    assert not [s for s in frontend.sent if s[0] == "remove"]
    window.release(pinned[3])
    assert window.acquire(nodeid, ro, RANGES * RANGE, writable=False).moffset == pinned[3].moffset


def test_forget_removes_the_unpinned_ranges_of_an_inode(setup) -> None:
    window, frontend, nodeid, ro, _ = setup
    kept = window.acquire(nodeid, ro, 0, writable=False)
    window.release(window.acquire(nodeid, ro, RANGE, writable=False))
    window.release(window.acquire(nodeid, ro, 2 * RANGE, writable=False))
    window.forget(nodeid)
    assert window.mapped(nodeid) == {0: kept}
    assert frontend.sent[-1][0] == "remove" and len(frontend.sent[-1][1]) == 2
    assert window.free_count() == RANGES - 1


def test_failed_setup_leaves_no_trace(setup) -> None:
    window, frontend, nodeid, _, _ = setup
    with pytest.raises(OSError) as err:
        window.acquire(nodeid, 999, 0, writable=False)
    assert err.value.errno == errno.EBADF
    assert window.free_count() == RANGES and window.mapped(nodeid) == {}


class HeldSetups(InProcessWindow):
    """The in-process front-end, with each SETUPMAPPING held in flight (after the
    request is sent, before it is answered) while `hold` is set, until `answer` is."""

    def __init__(self, session, size: int) -> None:
        super().__init__(session, size)
        self.hold = False
        self.in_flight = threading.Event()
        self.answer = threading.Event()

    def setupmapping(self, nodeid: int, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> None:
        if self.hold:
            self.in_flight.set()
            self.answer.wait()
        super().setupmapping(nodeid, fh, foffset, length, writable, moffset)


# A bound on waiting for what must already have happened: it only stops a broken
# implementation from hanging the suite, it is never what the test measures.
HANG = 60


def test_hits_are_served_while_another_threads_setupmapping_is_in_flight(export: Path) -> None:
    (export / "other").write_bytes(b"o" * RANGE)
    fs = PassthroughFS(str(export))
    session = fs.session()
    data = session.lookup(1, b"data").nodeid
    other = session.lookup(1, b"other").nodeid
    fh_data, fh_other = session.open(data, os.O_RDONLY), session.open(other, os.O_RDONLY)
    frontend = HeldSetups(session, RANGES * RANGE)
    window = DaxWindow(frontend.base, frontend.size, frontend, range_size=RANGE)
    try:
        hit_same = window.acquire(data, fh_data, 0, writable=False)
        hit_other = window.acquire(other, fh_other, 0, writable=False)
        window.release(hit_same)
        window.release(hit_other)

        frontend.hold = True
        missed: list[object] = []
        miss = threading.Thread(target=lambda: missed.append(
            window.acquire(data, fh_data, 3 * RANGE, writable=False)))
        miss.start()
        assert frontend.in_flight.wait(HANG)  # the miss's SETUPMAPPING is on the wire

        served: list[object] = []
        hits_done = threading.Event()

        def hits() -> None:
            served.append(window.acquire(data, fh_data, 10, writable=False))  # same inode
            served.append(window.acquire(other, fh_other, 10, writable=False))  # another
            hits_done.set()

        hitter = threading.Thread(target=hits)
        hitter.start()
        assert hits_done.wait(HANG), "a hit waited for another thread's SETUPMAPPING"
        assert served == [hit_same, hit_other]
        assert miss.is_alive() and not missed  # still in flight while the hits were served
        assert safemem.read(window.address(hit_same, 10), 4) == bytes(range(10, 14))

        frontend.answer.set()
        miss.join(HANG)
        hitter.join(HANG)
        assert not miss.is_alive() and missed[0] is window.mapped(data)[3 * RANGE]
    finally:
        frontend.answer.set()
        window.close()
        frontend.close()
        session.close()
        fs.close()


def test_a_second_miss_on_a_range_in_flight_waits_for_it_and_shares_it(export: Path) -> None:
    fs = PassthroughFS(str(export))
    session = fs.session()
    nodeid = session.lookup(1, b"data").nodeid
    fh = session.open(nodeid, os.O_RDONLY)
    frontend = HeldSetups(session, RANGES * RANGE)
    window = DaxWindow(frontend.base, frontend.size, frontend, range_size=RANGE)
    try:
        frontend.hold = True
        got: list[object] = []
        first = threading.Thread(target=lambda: got.append(
            window.acquire(nodeid, fh, RANGE, writable=False)))
        first.start()
        assert frontend.in_flight.wait(HANG)
        frontend.hold = False  # the second acquire would not be held: it must not send
        second = threading.Thread(target=lambda: got.append(
            window.acquire(nodeid, fh, RANGE + 5, writable=False)))
        second.start()
        frontend.answer.set()
        first.join(HANG)
        second.join(HANG)
        assert len(got) == 2 and got[0] is got[1] and got[0].pins == 2
        assert [s for s in frontend.sent if s[0] == "setup"] == [("setup", RANGE, got[0].moffset,
                                                                   False)]
    finally:
        frontend.answer.set()
        window.close()
        frontend.close()
        session.close()
        fs.close()


def test_a_failed_removemapping_is_logged_and_its_range_kept_accounted(
        setup, caplog: pytest.LogCaptureFixture) -> None:
    window, frontend, nodeid, ro, _ = setup
    rng = window.acquire(nodeid, ro, RANGE, writable=False)
    window.release(rng)
    # The host forgets the mapping behind the guest's back: its REMOVEMAPPING is refused.
    frontend.session.removemapping(rng.moffset, RANGE)
    with caplog.at_level(logging.WARNING, logger="pagefs.guest"):
        window.forget(nodeid)
    assert "REMOVEMAPPING of 1 window ranges failed" in caplog.text
    assert window.stale_count() == 1 and window.free_count() == RANGES - 1
    assert window.mapped(nodeid) == {}  # nobody is handed the range of unknown state
    # Once the host holds it again, the next reclaim sends it again, and it is free.
    grant = frontend.session.setupmapping(ro, RANGE, RANGE, False, rng.moffset)
    os.close(grant.fd)
    window.reclaim()
    assert window.stale_count() == 0 and window.free_count() == RANGES
    assert frontend.sent[-1] == ("remove", [rng.moffset])


# -- the books the fast read uses (fastread.c) ------------------------------------------

def _pattern(offset: int, size: int) -> bytes:
    return bytes((offset + i) % 251 for i in range(size))


def test_the_fast_read_serves_mapped_ranges_and_declines_the_rest(setup) -> None:
    window, _, nodeid, ro, _ = setup
    reader = safemem.new_reader(window.books, nodeid)
    buffer = bytearray(3000)
    assert safemem.pread(reader, buffer, 100) == -1  # nothing mapped
    window.release(window.acquire(nodeid, ro, 0, writable=False))
    assert safemem.pread(reader, buffer, 100) == 3000 and buffer == _pattern(100, 3000)
    # Its READ-BOUND probe lies in the next range, not mapped: declined.
    assert safemem.pread(reader, buffer, RANGE - 3000) == -1
    window.release(window.acquire(nodeid, ro, RANGE, writable=False))
    assert safemem.pread(reader, buffer, RANGE - 3000) == 3000
    assert buffer == _pattern(RANGE - 3000, 3000)
    assert safemem.pread(reader, buffer, RANGE - 1000) == 3000  # across two ranges
    assert buffer == _pattern(RANGE - 1000, 3000)
    assert safemem.pread(safemem.new_reader(window.books, nodeid + 1), buffer, 100) == -1
    assert safemem.pread(safemem.no_reader(), buffer, 100) == -1
    assert safemem.pread(reader, bytearray(), 100) == -1
    assert safemem.pread(reader, buffer, -1) == -1


def test_the_fast_read_declines_where_the_file_ends_before_its_probe(setup, export) -> None:
    window, _, nodeid, ro, _ = setup
    window.release(window.acquire(nodeid, ro, 0, writable=False))
    reader = safemem.new_reader(window.books, nodeid)
    buffer = bytearray(3000)
    os.truncate(export / "data", 4096)  # the read fits, but the file ends at its probe
    assert safemem.pread(reader, buffer, 100) == -1
    os.truncate(export / "data", 4097)  # the probe's page is file data again
    assert safemem.pread(reader, buffer, 100) == 3000 and buffer == _pattern(100, 3000)
    os.truncate(export / "data", 2000)  # ends inside the read
    assert safemem.pread(reader, buffer, 100) == -1


def test_a_sequential_read_entering_a_new_range_is_left_to_the_general_path(setup) -> None:
    window, _, nodeid, ro, _ = setup
    for i in range(2):
        window.release(window.acquire(nodeid, ro, i * RANGE, writable=False))
    reader = safemem.new_reader(window.books, nodeid)
    buffer = bytearray(RANGE // 2)
    assert safemem.pread(reader, buffer, 0) == RANGE // 2
    assert safemem.pread(reader, buffer, RANGE // 2) == RANGE // 2  # sequential, same range
    assert safemem.pread(reader, buffer, RANGE) == -1  # sequential into range 1: map ahead
    assert safemem.pread(reader, buffer, RANGE + 4096) == RANGE // 2  # not sequential
    window.release(window.acquire(nodeid, ro, 2 * RANGE, writable=False))
    reader.last_end = RANGE  # the range ahead is mapped already: nothing to do
    assert safemem.pread(reader, buffer, RANGE) == RANGE // 2


def test_a_range_withdrawn_or_handed_to_another_file_range_is_not_read(setup) -> None:
    window, _, nodeid, ro, _ = setup
    first = window.acquire(nodeid, ro, 0, writable=False)
    window.release(first)
    reader = safemem.new_reader(window.books, nodeid)
    buffer = bytearray(4096)
    assert safemem.pread(reader, buffer, 0) == 4096
    window.forget(nodeid)
    assert safemem.pread(reader, buffer, 0) == -1  # withdrawn before its REMOVEMAPPING
    again = window.acquire(nodeid, ro, 2 * RANGE, writable=False)
    window.release(again)
    assert again.moffset == first.moffset  # the same window memory, another file range
    assert safemem.pread(reader, buffer, 0) == -1
    assert safemem.pread(reader, buffer, 2 * RANGE) == 4096
    assert buffer == _pattern(2 * RANGE, 4096)


def test_fast_reads_racing_removal_and_reuse_return_only_their_own_bytes(export) -> None:
    """A reader copies three ranges with no lock while another thread removes the third
    and maps another file range into its window memory, back and forth: every read it
    returns holds its own bytes (a range changed under the copy fails the generation
    check after it). Ranges of 2 MiB, so that a copy lasts longer than a remapping."""
    step = 2 << 20
    (export / "big").write_bytes(bytes(i % 251 for i in range(6 * step)))
    fs = PassthroughFS(str(export))
    session = fs.session()
    nodeid = session.lookup(1, b"big").nodeid
    ro = session.open(nodeid, os.O_RDONLY)
    frontend = InProcessWindow(session, 4 * step)
    window = DaxWindow(frontend.base, frontend.size, frontend, range_size=step)
    for i in range(2):  # pinned: reclaim never takes them
        window.acquire(nodeid, ro, i * step, writable=False)
    third = window.acquire(nodeid, ro, 2 * step, writable=False)
    window.release(third)
    reader = safemem.new_reader(window.books, nodeid)
    size = 3 * step - 8192  # its probe, too, lies in the third range
    want = _pattern(0, size)
    done = threading.Event()
    results = {"served": 0, "declined": 0, "wrong": 0}

    def read() -> None:
        buffer = bytearray(size)
        while not done.is_set():
            n = safemem.pread(reader, buffer, 0)
            key = "declined" if n < 0 else "served" if buffer == want else "wrong"
            results[key] += 1

    thread = threading.Thread(target=read)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the two threads interleave finely, between C calls too
    thread.start()
    try:
        for _ in range(200):
            for foffset in (5 * step, 2 * step):  # the only unpinned range goes, and its
                assert window.reclaim(1) == 1  # window memory maps the other file range
                rng = window.acquire(nodeid, ro, foffset, writable=False)
                window.release(rng)
                assert rng.moffset == third.moffset
            time.sleep(0.001)  # the reader's copies start while the third range is its own
    finally:
        done.set()
        thread.join()
        sys.setswitchinterval(interval)
        window.close()
        frontend.close()
        session.close()
        fs.close()
    assert results["wrong"] == 0, results
    assert results["served"] > 0, results


def test_ranges_fast_reads_use_are_the_last_reclaim_takes(setup) -> None:
    window, _, nodeid, ro, _ = setup
    for i in range(RANGES):  # least recently used first: range 0
        window.release(window.acquire(nodeid, ro, i * RANGE, writable=False))
    reader = safemem.new_reader(window.books, nodeid)
    assert safemem.pread(reader, bytearray(100), 10) == 100  # range 0, with no lock taken
    assert window.reclaim(1) == 1
    assert set(window.mapped(nodeid)) == {i * RANGE for i in range(RANGES)} - {RANGE}


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(0, RANGES * RANGE), offset=st.integers(0, RANGES * RANGE),
       length=st.integers(1, 3 * PAGE_SIZE))
def test_the_fast_read_serves_exactly_what_read_bound_proves(setup, export, size, offset,
                                                             length) -> None:
    """Tied to the spec on concrete states: with every range mapped, the C fast read
    returns the whole read (and its bytes) iff the spec's probe (read_probe) lies in the
    window and proves the read inside the file (probe_bounds_read) at the host's size."""
    window, _, nodeid, ro, _ = setup
    for i in range(RANGES):
        window.release(window.acquire(nodeid, ro, i * RANGE, writable=False))
    with open(export / "data", "r+b") as f:  # the pattern, up to `size`
        f.write(_pattern(0, RANGES * RANGE))
        f.truncate(size)
    end = offset + length
    probe = read_probe(end, PAGE_SIZE)
    proves = probe < RANGES * RANGE and probe_bounds_read(probe, end, size)
    buffer = bytearray(length)
    done = safemem.pread(safemem.new_reader(window.books, nodeid), buffer, offset)
    assert done == (length if proves else -1)
    if proves:
        assert buffer == _pattern(offset, length)
