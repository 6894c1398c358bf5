"""SETUPMAPPING / REMOVEMAPPING through dispatch into a real DAX window in this process.

The Mapper is the transport's ShmemWindow (a PROT_NONE reservation that donated fds are
mapped over with MAP_FIXED); loads and stores go to the host file's page-cache pages.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pagefs.impl import protocol as p
from pagefs.impl.guest import safemem
from pagefs.impl.host.dispatch import Dispatcher
from pagefs.impl.host.passthrough import GuestSession, PassthroughFS
from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.protocol import constants as c

from .test_dispatch import Guest, WindowMapper

ROOT = c.FUSE_ROOT_ID
Op = c.Opcode
PAGE = PAGE_SIZE
RANGE = 1 << c.FUSE_DAX_SHIFT
READ = c.FUSE_SETUPMAPPING_FLAG_READ
WRITE = c.FUSE_SETUPMAPPING_FLAG_WRITE



def fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.fixture
def data_export(export: Path) -> Path:
    (export / "data").write_bytes(b"A" * PAGE + b"B" * PAGE)
    return export


@pytest.fixture
def window() -> Iterator[WindowMapper]:
    mapper = WindowMapper(4 * RANGE)
    safemem.install()
    safemem.register_window(mapper.window.base, mapper.window.size)
    yield mapper
    safemem.unregister_window(mapper.window.base)
    mapper.window.close()


def connect(session: GuestSession, window: WindowMapper) -> Guest:
    guest = Guest(Dispatcher(session, window))
    assert guest.init().map_alignment == PAGE.bit_length() - 1
    return guest


def opened(guest: Guest, name: bytes, flags: int) -> tuple[int, int]:
    nodeid = guest.lookup(ROOT, name).nodeid
    return nodeid, guest.open(nodeid, flags)


def window_bytes(window: WindowMapper, offset: int, length: int) -> bytes:
    return safemem.read(window.window.base + offset, length)


def test_writable_mapping_shares_the_host_pages(
    guest: GuestSession, window: WindowMapper, data_export: Path
) -> None:
    baseline = fds()
    wire = connect(guest, window)
    nodeid, fh = opened(wire, b"data", os.O_RDWR)
    wire.ok(Op.SETUPMAPPING, nodeid, p.SetupmappingIn(fh, 0, 2 * PAGE, READ | WRITE, RANGE))
    assert window.window.mapped_bytes() == 2 * PAGE
    assert window_bytes(window, RANGE, 2 * PAGE) == b"A" * PAGE + b"B" * PAGE
    with open(data_export / "data", "r+b") as host:  # COH-READ: the host writes...
        host.seek(PAGE)
        host.write(b"host")
    assert window_bytes(window, RANGE + PAGE, 4) == b"host"  # ...and the guest loads it
    assert safemem.write_from(window.window.base + RANGE + 8, b"guest") == 5  # COH-WRITE
    assert (data_export / "data").read_bytes()[8:13] == b"guest"
    # The granted descriptor was closed after the donation: the mapping alone holds the
    # file; what remains is the handle's fd and the nodeid's O_PATH fd.
    assert len(fds() - baseline) == 2
    remove = p.RemovemappingIn((p.RemovemappingOne(RANGE, 2 * PAGE),))
    wire.ok(Op.REMOVEMAPPING, nodeid, remove)
    assert window.window.mapped_bytes() == 0 and guest.mappings == []
    assert safemem.read_into(window.window.base + RANGE, bytearray(1)) == 0  # faults now


def test_read_mapping_cannot_be_written_through(
    guest: GuestSession, window: WindowMapper, data_export: Path
) -> None:
    wire = connect(guest, window)
    nodeid, fh = opened(wire, b"data", os.O_RDWR)
    wire.ok(Op.SETUPMAPPING, nodeid, p.SetupmappingIn(fh, PAGE, PAGE, READ, 0))
    assert window_bytes(window, 0, 4) == b"BBBB"
    assert safemem.write_from(window.window.base, b"x") == 0  # the store faults
    assert (data_export / "data").read_bytes()[PAGE] == ord("B")


def test_read_only_handle_gets_no_writable_mapping(
    guest: GuestSession, window: WindowMapper, data_export: Path
) -> None:
    wire = connect(guest, window)
    nodeid, fh = opened(wire, b"data", os.O_RDONLY)
    baseline = fds()
    wire.fails(errno.EACCES, Op.SETUPMAPPING, nodeid,
               p.SetupmappingIn(fh, 0, PAGE, READ | WRITE, 0))  # fmt: skip
    assert window.window.mapped_bytes() == 0 and guest.mappings == [] and fds() == baseline


def test_read_only_export_donates_only_read_only_fds(
    data_export: Path, window: WindowMapper
) -> None:
    with PassthroughFS(str(data_export), read_only=True) as fs:
        session = fs.session()
        wire = connect(session, window)
        nodeid, fh = opened(wire, b"data", os.O_RDONLY)
        wire.fails(errno.EROFS, Op.SETUPMAPPING, nodeid,
                   p.SetupmappingIn(fh, 0, PAGE, READ | WRITE, 0))  # fmt: skip
        wire.ok(Op.SETUPMAPPING, nodeid, p.SetupmappingIn(fh, 0, PAGE, READ, 0))
        assert window_bytes(window, 0, 1) == b"A"
        assert safemem.write_from(window.window.base, b"x") == 0
        session.close()


def test_a_map_the_front_end_refuses_is_rolled_back(
    guest: GuestSession, window: WindowMapper, data_export: Path
) -> None:
    wire = connect(guest, window)
    nodeid, fh = opened(wire, b"data", os.O_RDWR)
    baseline = fds()
    beyond = window.window.size  # the session does not know the window's size; the front-end does
    wire.fails(errno.EINVAL, Op.SETUPMAPPING, nodeid, p.SetupmappingIn(fh, 0, PAGE, READ, beyond))
    assert guest.mappings == [] and fds() == baseline


def test_removemapping_serves_every_entry_and_stops_at_a_bad_one(
    guest: GuestSession, window: WindowMapper, data_export: Path
) -> None:
    wire = connect(guest, window)
    nodeid, fh = opened(wire, b"data", os.O_RDWR)
    for moffset in (0, RANGE, 2 * RANGE):
        wire.ok(Op.SETUPMAPPING, nodeid, p.SetupmappingIn(fh, 0, PAGE, READ, moffset))
    assert window.window.mapped_bytes() == 3 * PAGE
    both = p.RemovemappingIn(tuple(p.RemovemappingOne(m, PAGE) for m in (0, RANGE)))
    wire.ok(Op.REMOVEMAPPING, nodeid, both)
    assert window.window.mapped_bytes() == PAGE and len(guest.mappings) == 1
    unaligned = p.RemovemappingIn((p.RemovemappingOne(2 * RANGE, PAGE // 2),))
    wire.fails(errno.EINVAL, Op.REMOVEMAPPING, nodeid, unaligned)
    assert window_bytes(window, 2 * RANGE, 1) == b"A"  # untouched


def test_mapping_outlives_release(
    guest: GuestSession, window: WindowMapper, data_export: Path
) -> None:
    wire = connect(guest, window)
    nodeid, fh = opened(wire, b"data", os.O_RDWR)
    wire.ok(Op.SETUPMAPPING, nodeid, p.SetupmappingIn(fh, 0, PAGE, READ | WRITE, 0))
    wire.ok(Op.RELEASE, nodeid, p.ReleaseIn(fh))
    (data_export / "data").write_bytes(b"C" * PAGE)  # LIFETIME, then COH-READ
    assert window_bytes(window, 0, 2) == b"CC"


def test_two_guests_share_one_page(
    fs: PassthroughFS, data_export: Path, window: WindowMapper
) -> None:
    other = WindowMapper(RANGE)
    safemem.register_window(other.window.base, other.window.size)
    sessions = [fs.session(), fs.session()]
    try:
        for session, win in zip(sessions, (window, other), strict=True):
            wire = connect(session, win)
            nodeid, fh = opened(wire, b"data", os.O_RDWR)
            wire.ok(Op.SETUPMAPPING, nodeid, p.SetupmappingIn(fh, 0, PAGE, READ | WRITE, 0))
        assert safemem.write_from(window.window.base, b"peer") == 4
        assert safemem.read(other.window.base, 4) == b"peer"  # COH-PEER
    finally:
        for session in sessions:
            session.close()
        safemem.unregister_window(other.window.base)
        other.window.close()


def test_fd_count_returns_to_baseline(fs: PassthroughFS, data_export: Path) -> None:
    baseline = fds()
    mapper = WindowMapper(RANGE)
    session = fs.session()
    wire = Guest(Dispatcher(session, mapper))
    wire.init()
    for _ in itertools.repeat(None, 5):
        nodeid, fh = opened(wire, b"data", os.O_RDWR)
        wire.ok(Op.SETUPMAPPING, nodeid, p.SetupmappingIn(fh, 0, PAGE, READ | WRITE, 0))
        wire.ok(Op.RELEASE, nodeid, p.ReleaseIn(fh))
    session.close()
    mapper.window.close()
    assert fds() == baseline


def test_a_linux_guest_maps_by_nodeid_without_a_handle(
    guest: GuestSession, window: WindowMapper, data_export: Path
) -> None:
    """fs/fuse/dax.c sends fh = -1 and a whole 2 MiB range, past EOF included."""
    wire = connect(guest, window)
    nodeid = wire.lookup(ROOT, b"data").nodeid
    by_node = p.SetupmappingIn(c.FUSE_SETUPMAPPING_NO_FH, 0, RANGE, READ | WRITE, RANGE)
    wire.ok(Op.SETUPMAPPING, nodeid, by_node)
    assert guest.stats()["handles"] == 0  # the handle it was made through is gone
    assert window_bytes(window, RANGE + PAGE, 2) == b"BB"
    assert safemem.write_from(window.window.base + RANGE, b"kernel") == 6
    assert (data_export / "data").read_bytes()[:6] == b"kernel"
    # Past EOF the access faults for itself alone (EOF-FAULT).
    assert safemem.read_into(window.window.base + RANGE + 2 * PAGE, bytearray(1)) == 0
    wire.fails(errno.ESTALE, Op.SETUPMAPPING, 999, by_node)


def test_by_nodeid_writable_mapping_of_a_read_only_export_is_erofs(
    data_export: Path, window: WindowMapper
) -> None:
    with PassthroughFS(str(data_export), read_only=True) as fs:
        session = fs.session()
        wire = connect(session, window)
        nodeid = wire.lookup(ROOT, b"data").nodeid
        no_fh = c.FUSE_SETUPMAPPING_NO_FH
        wire.fails(errno.EROFS, Op.SETUPMAPPING, nodeid,
                   p.SetupmappingIn(no_fh, 0, RANGE, READ | WRITE, 0))  # fmt: skip
        wire.ok(Op.SETUPMAPPING, nodeid, p.SetupmappingIn(no_fh, 0, RANGE, READ, 0))
        assert window_bytes(window, 0, 1) == b"A" and session.stats()["handles"] == 0
        session.close()


def test_concurrent_mapping_requests_keep_host_record_and_window_in_agreement(
    guest: GuestSession, window: WindowMapper, export: Path
) -> None:
    """Requests come from several queues at once; afterwards every window page shows the
    file the session's record says it shows, and unrecorded pages fault."""
    contents = {b"a": b"a" * PAGE, b"b": b"b" * PAGE}
    for name, data in contents.items():
        (export / name.decode()).write_bytes(data)
    wire = connect(guest, window)
    handles = {name: opened(wire, name, os.O_RDONLY) for name in contents}
    slots = [i * PAGE for i in range(4)]

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            moffset = rng.choice(slots)
            if rng.random() < 0.3:
                entry = p.RemovemappingIn((p.RemovemappingOne(moffset, PAGE),))
                wire.call(Op.REMOVEMAPPING, ROOT, entry)  # EINVAL when not mapped: fine
            else:
                nodeid, fh = handles[rng.choice(list(contents))]
                wire.ok(Op.SETUPMAPPING, nodeid, p.SetupmappingIn(fh, 0, PAGE, READ, moffset))

    # The real back-end waits for the front-end's REPLY_ACK on a socket: give each map and
    # unmap that much time, so that requests on other queues overtake one another.
    for method in ("shmem_map", "shmem_unmap"):
        setattr(window, method, _after_a_round_trip(getattr(window, method)))
    keys = {os.stat(export / name.decode()).st_ino: name for name in contents}
    for round_ in range(16):
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(churn, range(4 * round_, 4 * round_ + 4)))
        recorded = {m.moffset: keys[m.owner[1]] for m in guest.mappings}
        for moffset in slots:
            shown = bytearray(1)
            if moffset in recorded:
                assert safemem.read_into(window.window.base + moffset, shown) == 1
                assert bytes(shown) == contents[recorded[moffset]][:1]
            else:
                assert safemem.read_into(window.window.base + moffset, shown) == 0


def _after_a_round_trip(call):
    def delayed(*args):
        time.sleep(random.uniform(0, 0.001))
        return call(*args)

    return delayed
