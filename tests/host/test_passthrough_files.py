"""The passthrough layer's file requests on a real export: OPEN, CREATE, READ, WRITE,
SETATTR, FLUSH, FSYNC, RELEASE (HANDLE, ACCESS-MODE, LIFETIME, COH-META)."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from pagefs.impl.host.passthrough import GuestSession
from pagefs.impl.protocol.constants import FUSE_ROOT_ID as ROOT_ID

from .conftest import expect_errno


def open_file(guest: GuestSession, flags: int, name: bytes = b"file") -> int:
    return guest.open(guest.lookup(ROOT_ID, name).nodeid, flags)


def test_read_write_through_handles(guest: GuestSession, export) -> None:
    fh = open_file(guest, os.O_RDWR)
    assert guest.read(fh, 2, 4) == b"2345"
    assert guest.read(fh, 8, 100) == b"89"
    assert guest.read(fh, 100, 10) == b""
    assert guest.write(fh, 10, b"ABC") == 3
    assert (export / "file").read_bytes() == b"0123456789ABC"
    (export / "file").write_bytes(b"host wrote this")
    assert guest.read(fh, 0, 100) == b"host wrote this"  # COH-READ: no stale copy
    guest.release(fh)


def test_access_modes_bound_what_a_handle_does(guest: GuestSession) -> None:
    reader = open_file(guest, os.O_RDONLY)
    writer = open_file(guest, os.O_WRONLY)
    expect_errno(errno.EBADF, guest.write, reader, 0, b"x")
    expect_errno(errno.EBADF, guest.read, writer, 0, 1)
    expect_errno(errno.EINVAL, guest.read, reader, -1, 1)
    expect_errno(errno.EINVAL, guest.write, writer, -1, b"x")
    expect_errno(errno.EINVAL, open_file, guest, os.O_ACCMODE)


def test_handles_are_unique_and_release_ends_them(guest: GuestSession) -> None:
    seen = set()
    for _ in range(5):
        fh = open_file(guest, os.O_RDONLY)
        assert fh not in seen
        seen.add(fh)
        guest.release(fh)
        expect_errno(errno.EBADF, guest.read, fh, 0, 1)
        expect_errno(errno.EBADF, guest.release, fh)
    dir_fh = guest.opendir(ROOT_ID)
    assert dir_fh not in seen
    expect_errno(errno.EBADF, guest.release, dir_fh)  # a directory handle is not a file's
    expect_errno(errno.EBADF, guest.releasedir, open_file(guest, os.O_RDONLY))
    expect_errno(errno.EBADF, guest.read, 12345, 0, 1)
    expect_errno(errno.EBADF, guest.fsync, 12345, False)
    expect_errno(errno.EBADF, guest.flush, 12345)


def test_open_by_kind(guest: GuestSession, export) -> None:
    dir_id = guest.lookup(ROOT_ID, b"dir").nodeid
    expect_errno(errno.EISDIR, guest.open, dir_id, os.O_RDWR)
    # open(2) would allow it, but a file handle on a directory is a directory fd that a
    # SETUPMAPPING could donate: directories are OPENDIR's alone (ONLY-REGULAR)
    expect_errno(errno.EISDIR, guest.open, dir_id, os.O_RDONLY)
    os.symlink("file", export / "link")
    expect_errno(errno.ELOOP, open_file, guest, os.O_RDONLY, b"link")
    expect_errno(errno.ESTALE, guest.open, 31337, os.O_RDONLY)


def test_open_truncates(guest: GuestSession, export) -> None:
    guest.release(open_file(guest, os.O_WRONLY | os.O_TRUNC))
    assert (export / "file").read_bytes() == b""


def test_create_makes_opens_or_refuses(guest: GuestSession, export) -> None:
    entry, fh = guest.create(ROOT_ID, b"new", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
    assert stat.S_ISREG(entry.attr.st_mode)
    assert entry.attr.st_ino == os.stat(export / "new").st_ino
    assert guest.lookup(ROOT_ID, b"new").nodeid == entry.nodeid
    guest.write(fh, 0, b"created")
    assert (export / "new").read_bytes() == b"created"
    expect_errno(errno.EEXIST, guest.create, ROOT_ID, b"new",
                 os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
    again, fh2 = guest.create(ROOT_ID, b"new", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o640)
    assert again.nodeid == entry.nodeid and fh2 != fh
    assert (export / "new").read_bytes() == b""
    expect_errno(errno.EISDIR, guest.create, ROOT_ID, b"dir", os.O_RDWR | os.O_CREAT, 0o644)
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    expect_errno(errno.ENOTDIR, guest.create, file_id, b"x", os.O_RDWR | os.O_CREAT, 0o644)


def test_setattr_size_mode_times(guest: GuestSession, export) -> None:
    nodeid = guest.lookup(ROOT_ID, b"file").nodeid
    assert guest.setattr(nodeid, None, size=4).st_size == 4
    assert (export / "file").read_bytes() == b"0123"
    assert stat.S_IMODE(guest.setattr(nodeid, None, mode=0o100604).st_mode) == 0o604
    before = os.stat(export / "file")
    after = guest.setattr(nodeid, None, mtime_ns=1_000_000_000_123)
    assert after.st_mtime_ns == 1_000_000_000_123
    assert after.st_atime_ns == before.st_atime_ns  # the time not given is left alone
    after = guest.setattr(nodeid, None, atime_ns=7_000_000_000)
    assert (after.st_atime_ns, after.st_mtime_ns) == (7_000_000_000, 1_000_000_000_123)
    writer = guest.open(nodeid, os.O_WRONLY)
    assert guest.setattr(nodeid, writer, size=100).st_size == 100
    reader = guest.open(nodeid, os.O_RDONLY)
    expect_errno(errno.EINVAL, guest.setattr, nodeid, reader, size=1)
    expect_errno(errno.EBADF, guest.setattr, nodeid, 999, size=1)
    expect_errno(errno.EINVAL, guest.setattr, nodeid, None, size=-1)
    dir_id = guest.lookup(ROOT_ID, b"dir").nodeid
    expect_errno(errno.EISDIR, guest.setattr, dir_id, None, size=0)
    link = guest.symlink(ROOT_ID, b"link", b"file").nodeid
    expect_errno(errno.EOPNOTSUPP, guest.setattr, link, None, mode=0o777)
    assert stat.S_IMODE(os.stat(export / "file").st_mode) == 0o604  # not followed


def test_getattr_through_a_handle(guest: GuestSession, export) -> None:
    nodeid = guest.lookup(ROOT_ID, b"file").nodeid
    fh = guest.open(nodeid, os.O_RDONLY)
    assert guest.getattr(nodeid, fh).st_size == 10
    expect_errno(errno.EBADF, guest.getattr, nodeid, fh + 1000)


def test_flush_and_fsync_on_writers_and_readers(guest: GuestSession, export) -> None:
    writer = open_file(guest, os.O_WRONLY)
    guest.write(writer, 0, b"durable")
    guest.flush(writer)
    guest.fsync(writer, datasync=True)
    guest.fsync(writer, datasync=False)
    reader = open_file(guest, os.O_RDONLY)
    guest.flush(reader)
    guest.fsync(reader, datasync=False)
    dir_fh = guest.opendir(ROOT_ID)
    guest.fsync(dir_fh, datasync=False)  # FSYNCDIR
    assert (export / "file").read_bytes().startswith(b"durable")


def test_open_file_outlives_host_unlink(guest: GuestSession, export) -> None:
    fh = open_file(guest, os.O_RDWR)
    os.unlink(export / "file")
    guest.write(fh, 0, b"still")
    assert guest.read(fh, 0, 5) == b"still"
    guest.release(fh)


def test_open_file_follows_host_rename(guest: GuestSession, export) -> None:
    nodeid = guest.lookup(ROOT_ID, b"file").nodeid
    os.rename(export / "file", export / "dir" / "elsewhere")
    fh = guest.open(nodeid, os.O_RDONLY)  # the nodeid names the inode, not the path
    assert guest.read(fh, 0, 3) == b"012"


def test_a_closed_session_answers_nothing(fs) -> None:
    session = fs.session()
    session.close()
    session.close()  # idempotent
    expect_errno(errno.ENOTCONN, session.lookup, ROOT_ID, b"file")


@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_WRONLY | os.O_APPEND, os.O_RDWR | os.O_SYNC])
def test_open_flags_reach_the_host_descriptor(guest: GuestSession, export, flags: int) -> None:
    fh = open_file(guest, flags)
    if flags & os.O_APPEND:
        guest.write(fh, 0, b"!")  # O_APPEND: the offset is ignored, as pwrite(2) does
        assert (export / "file").read_bytes() == b"0123456789!"
    guest.release(fh)


def test_fsync_and_flush_reach_the_host_file(guest: GuestSession, export, monkeypatch) -> None:
    """DURABLE: the calls reach fsync/fdatasync on a descriptor of the very file."""
    synced: list[tuple[str, int]] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def spy(fd: int, real=real, name=name) -> None:
            synced.append((name, os.fstat(fd).st_ino))
            real(fd)

        monkeypatch.setattr(os, name, spy)
    ino = os.stat(export / "file").st_ino
    writer = open_file(guest, os.O_WRONLY)
    guest.write(writer, 0, b"x")
    guest.fsync(writer, datasync=True)
    guest.fsync(writer, datasync=False)
    guest.flush(writer)
    assert synced == [("fdatasync", ino), ("fsync", ino), ("fsync", ino)]
