"""SETUPMAPPING / REMOVEMAPPING checks and grants on real files, read-only exports and
RECLAIM (ACCESS-MODE, RO-EXPORT, LIFETIME, RECLAIM)."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os

import pytest

from pagefs.impl.host.passthrough import GuestSession, PassthroughFS
from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.protocol.constants import FUSE_ROOT_ID as ROOT_ID

from .conftest import expect_errno, open_fds

MB2 = 2 << 20


@pytest.fixture
def big(export) -> bytes:
    data = bytes(range(256)) * (3 * PAGE_SIZE // 256)
    (export / "big").write_bytes(data)
    return data


def open_big(guest: GuestSession, flags: int) -> int:
    return guest.open(guest.lookup(ROOT_ID, b"big").nodeid, flags)


def test_read_grant_is_a_read_only_fd_on_the_file(guest: GuestSession, big: bytes) -> None:
    fh = open_big(guest, os.O_RDWR)
    grant = guest.setupmapping(fh, PAGE_SIZE, PAGE_SIZE, False, 0)
    try:
        assert fcntl.fcntl(grant.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        assert (grant.fd_offset, grant.length, grant.writable) == (PAGE_SIZE, PAGE_SIZE, False)
        with mmap.mmap(grant.fd, grant.length, mmap.MAP_SHARED, mmap.PROT_READ,
                       offset=grant.fd_offset) as view:
            assert view[:] == big[PAGE_SIZE:2 * PAGE_SIZE]
        with pytest.raises(PermissionError):
            mmap.mmap(grant.fd, grant.length, mmap.MAP_SHARED,
                      mmap.PROT_READ | mmap.PROT_WRITE, offset=grant.fd_offset)
    finally:
        os.close(grant.fd)


def test_write_grant_stores_reach_the_host_file(guest: GuestSession, export, big) -> None:
    fh = open_big(guest, os.O_RDWR)
    grant = guest.setupmapping(fh, 0, PAGE_SIZE, True, MB2)
    try:
        assert fcntl.fcntl(grant.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
        with mmap.mmap(grant.fd, grant.length, mmap.MAP_SHARED,
                       mmap.PROT_READ | mmap.PROT_WRITE, offset=0) as view:
            view[:5] = b"STORE"
            assert (export / "big").read_bytes()[:5] == b"STORE"  # COH-WRITE, no msync
    finally:
        os.close(grant.fd)


@pytest.mark.parametrize(("flags", "writable", "code"), [
    (os.O_RDONLY, True, errno.EACCES),
    (os.O_WRONLY, False, errno.EACCES),
    (os.O_WRONLY, True, errno.EACCES),
    (os.O_RDWR | os.O_APPEND, True, errno.EACCES),
])
def test_access_mode_bounds_the_mapping(guest: GuestSession, big, flags, writable, code) -> None:
    fds = open_fds()
    expect_errno(code, guest.setupmapping, open_big(guest, flags), 0, PAGE_SIZE, writable, 0)
    assert guest.mappings == []
    assert len(open_fds()) == len(fds) + 2  # the lookup and the handle; no grant leaked


@pytest.mark.parametrize(("foffset", "length", "moffset", "code"), [
    (1, PAGE_SIZE, 0, errno.EINVAL),
    (0, PAGE_SIZE + 1, 0, errno.EINVAL),
    (0, PAGE_SIZE, 512, errno.EINVAL),
    (0, 0, 0, errno.EINVAL),
    (-PAGE_SIZE, PAGE_SIZE, 0, errno.EINVAL),
    (0, PAGE_SIZE, -PAGE_SIZE, errno.EINVAL),
    ((1 << 63) - PAGE_SIZE, 2 * PAGE_SIZE, 0, errno.EOVERFLOW),
    (0, PAGE_SIZE, (1 << 64) - PAGE_SIZE, errno.EINVAL),
])
def test_ranges_are_checked(guest: GuestSession, big, foffset, length, moffset, code) -> None:
    fh = open_big(guest, os.O_RDWR)
    expect_errno(code, guest.setupmapping, fh, foffset, length, True, moffset)
    assert guest.mappings == []


def test_unknown_released_and_directory_handles(guest: GuestSession, big) -> None:
    expect_errno(errno.EBADF, guest.setupmapping, 4242, 0, PAGE_SIZE, False, 0)
    expect_errno(errno.EBADF, guest.setupmapping, (1 << 64) - 1, 0, PAGE_SIZE, False, 0)
    fh = open_big(guest, os.O_RDONLY)
    guest.release(fh)
    expect_errno(errno.EBADF, guest.setupmapping, fh, 0, PAGE_SIZE, False, 0)
    expect_errno(errno.ENODEV, guest.setupmapping, guest.opendir(ROOT_ID), 0, PAGE_SIZE,
                 False, 0)


def test_beyond_eof_is_grantable(guest: GuestSession, big) -> None:
    grant = guest.setupmapping(open_big(guest, os.O_RDONLY), MB2, MB2, False, 0)
    os.close(grant.fd)  # EOF-FAULT is the guest's business at access time


def test_mapping_outlives_release_and_remove_needs_a_mapped_range(guest: GuestSession,
                                                                   big) -> None:
    fh = open_big(guest, os.O_RDONLY)
    os.close(guest.setupmapping(fh, 0, 2 * PAGE_SIZE, False, MB2).fd)
    guest.release(fh)
    assert [(m.moffset, m.length) for m in guest.mappings] == [(MB2, 2 * PAGE_SIZE)]
    expect_errno(errno.EINVAL, guest.removemapping, 0, PAGE_SIZE)
    expect_errno(errno.EINVAL, guest.removemapping, MB2, 3 * PAGE_SIZE)
    expect_errno(errno.EINVAL, guest.removemapping, MB2, 0)
    expect_errno(errno.EINVAL, guest.removemapping, MB2 + 1, PAGE_SIZE)
    guest.removemapping(MB2 + PAGE_SIZE, PAGE_SIZE)
    assert [(m.moffset, m.length) for m in guest.mappings] == [(MB2, PAGE_SIZE)]
    guest.removemapping(MB2, PAGE_SIZE)
    expect_errno(errno.EINVAL, guest.removemapping, MB2, PAGE_SIZE)
    assert guest.mappings == []


def test_a_new_mapping_replaces_what_it_overlaps(guest: GuestSession, big) -> None:
    fh = open_big(guest, os.O_RDWR)
    os.close(guest.setupmapping(fh, 0, 3 * PAGE_SIZE, False, 0).fd)
    os.close(guest.setupmapping(fh, 0, PAGE_SIZE, True, PAGE_SIZE).fd)  # read -> write upgrade
    assert [(m.moffset, m.foffset, m.writable) for m in guest.mappings] == [
        (0, 0, False), (PAGE_SIZE, 0, True), (2 * PAGE_SIZE, 2 * PAGE_SIZE, False)]
    guest.removemapping(0, 3 * PAGE_SIZE)  # one request across the three pieces
    assert guest.mappings == []


def test_a_grant_names_the_mappings_it_replaces_whole(guest: GuestSession, big) -> None:
    """A Linux guest upgrades a read mapping by mapping the same range writable; the grant
    names the old one, which the daemon takes out of the front-end's window first (QEMU
    11.1 refuses a mapping over a live one). One it covers in part is not named."""
    fh = open_big(guest, os.O_RDWR)
    first = guest.setupmapping(fh, 0, 2 * PAGE_SIZE, False, 0)
    os.close(first.fd)
    assert first.replaces == ()
    upgrade = guest.setupmapping(fh, 0, 2 * PAGE_SIZE, True, 0)
    os.close(upgrade.fd)
    assert upgrade.replaces == ((0, 2 * PAGE_SIZE),)
    part = guest.setupmapping(fh, 0, PAGE_SIZE, False, PAGE_SIZE)
    os.close(part.fd)
    assert part.replaces == ()


READ_ONLY_REFUSALS = {
    "setattr": lambda g, n, fh: g.setattr(n, None, size=0),
    "setattr-mode": lambda g, n, fh: g.setattr(n, None, mode=0o777),
    "setattr-times": lambda g, n, fh: g.setattr(n, None, mtime_ns=0),
    "open-write": lambda g, n, fh: g.open(n, os.O_WRONLY),
    "open-rdwr": lambda g, n, fh: g.open(n, os.O_RDWR),
    "open-trunc": lambda g, n, fh: g.open(n, os.O_RDONLY | os.O_TRUNC),
    "create": lambda g, n, fh: g.create(ROOT_ID, b"new", os.O_RDONLY | os.O_CREAT, 0o644),
    "create-existing": lambda g, n, fh: g.create(ROOT_ID, b"big", os.O_RDONLY | os.O_CREAT, 0),
    "write": lambda g, n, fh: g.write(fh, 0, b"x"),
    "mkdir": lambda g, n, fh: g.mkdir(ROOT_ID, b"newdir", 0o755),
    "symlink": lambda g, n, fh: g.symlink(ROOT_ID, b"newlink", b"big"),
    "unlink": lambda g, n, fh: g.unlink(ROOT_ID, b"big"),
    "rmdir": lambda g, n, fh: g.rmdir(ROOT_ID, b"dir"),
    "rename": lambda g, n, fh: g.rename(ROOT_ID, b"big", ROOT_ID, b"moved"),
    "rename-exchange": lambda g, n, fh: g.rename(ROOT_ID, b"big", ROOT_ID, b"file", 2),
    "writable-mapping": lambda g, n, fh: g.setupmapping(fh, 0, PAGE_SIZE, True, 0),
}


@pytest.mark.parametrize("path", sorted(READ_ONLY_REFUSALS))
def test_read_only_export_has_no_write_path(ro_guest: GuestSession, export, big,
                                            path: str) -> None:
    before = {p.name: p.read_bytes() if p.is_file() else None for p in export.iterdir()}
    nodeid = ro_guest.lookup(ROOT_ID, b"big").nodeid
    fh = ro_guest.open(nodeid, os.O_RDONLY)
    expect_errno(errno.EROFS, READ_ONLY_REFUSALS[path], ro_guest, nodeid, fh)
    assert {p.name: p.read_bytes() if p.is_file() else None for p in export.iterdir()} == before


def test_read_only_export_reads_maps_read_only_and_sees_host_changes(ro_guest: GuestSession,
                                                                     export, big) -> None:
    fh = ro_guest.open(ro_guest.lookup(ROOT_ID, b"big").nodeid, os.O_RDONLY)
    grant = ro_guest.setupmapping(fh, 0, PAGE_SIZE, False, 0)
    try:
        assert fcntl.fcntl(grant.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        with open(export / "big", "r+b") as host:
            host.write(b"HOST")
        assert ro_guest.read(fh, 0, 4) == b"HOST"  # RO-EXPORT: host changes still seen
        ro_guest.fsync(fh, datasync=False)
    finally:
        os.close(grant.fd)


def test_close_reclaims_everything_and_spares_other_guests(fs: PassthroughFS, big) -> None:
    baseline = open_fds()
    other = fs.session()
    other_fh = other.open(other.lookup(ROOT_ID, b"big").nodeid, os.O_RDONLY)
    with_other = open_fds()
    guest = fs.session()
    dir_id = guest.lookup(ROOT_ID, b"dir").nodeid
    guest.lookup(dir_id, b"inner")
    fh = guest.open(guest.lookup(ROOT_ID, b"big").nodeid, os.O_RDWR)
    os.close(guest.setupmapping(fh, 0, PAGE_SIZE, True, 0).fd)
    guest.opendir(dir_id)
    assert guest.stats() == {"nodes": 4, "handles": 2, "mappings": 1}
    assert fs.sessions == 2
    guest.close()
    assert open_fds() == with_other
    assert fs.sessions == 1
    assert other.read(other_fh, 0, 4) == big[:4]
    other.close()
    assert open_fds() == baseline


def test_a_guest_cannot_hold_more_descriptors_than_its_cap(export) -> None:
    for i in range(5):
        (export / f"f{i}").write_bytes(b"x")
    with PassthroughFS(str(export), fds_per_guest=4) as capped:
        greedy, other = capped.session(), capped.session()
        held = [greedy.lookup(ROOT_ID, f"f{i}".encode()).nodeid for i in range(3)]  # + root
        expect_errno(errno.EMFILE, greedy.lookup, ROOT_ID, b"f3")
        assert greedy.lookup(ROOT_ID, b"f0").nodeid == held[0]  # known inodes cost nothing
        expect_errno(errno.EMFILE, greedy.open, held[0], os.O_RDONLY)
        expect_errno(errno.EMFILE, greedy.opendir, ROOT_ID)
        expect_errno(errno.EMFILE, greedy.mkdir, ROOT_ID, b"d", 0o755)
        expect_errno(errno.EMFILE, greedy.create, ROOT_ID, b"c", os.O_RDWR | os.O_CREAT, 0o644)
        assert sorted(p.name for p in export.iterdir()) == [
            "dir", "f0", "f1", "f2", "f3", "f4", "file"]  # nothing made half-way
        assert other.lookup(ROOT_ID, b"f3").nodeid > ROOT_ID  # the cap is per guest
        greedy.forget(held[1], 1)
        greedy.release(greedy.open(held[0], os.O_RDONLY))


@pytest.mark.parametrize("read_only", [False, True])
def test_writable_map_fds_donates_read_write_only_in_a_writable_export(export, big,
                                                                       read_only: bool) -> None:
    """--writable-map-fds (QEMU 11.1 maps every donated fd writable): a read mapping gets an
    O_RDWR descriptor in a writable export, and still an O_RDONLY one in a read-only export."""
    fs = PassthroughFS(str(export), read_only=read_only, writable_map_fds=True)
    session = fs.session()
    try:
        fh = open_big(session, os.O_RDONLY)
        grant = session.setupmapping(fh, 0, PAGE_SIZE, False, 0)
        try:
            want = os.O_RDONLY if read_only else os.O_RDWR
            assert fcntl.fcntl(grant.fd, fcntl.F_GETFL) & os.O_ACCMODE == want
            assert grant.writable is False  # the guest's view stays read-only
        finally:
            os.close(grant.fd)
    finally:
        session.close()
        fs.close()
