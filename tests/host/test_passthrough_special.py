"""LINK, MKNOD, the xattr requests, FALLOCATE and SYNCFS on a real export: what each does
to the host, and every errno it answers (a stale nodeid, a read-only export, bad names,
refused file types and namespaces, bad ranges and modes), confined like the rest."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from pagefs.impl.host.passthrough import GuestSession
from pagefs.impl.protocol.constants import FUSE_ROOT_ID as ROOT_ID

from .conftest import expect_errno

KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE, COLLAPSE_RANGE = 0x01, 0x02, 0x10, 0x08
STALE = 999


# -- LINK -----------------------------------------------------------------------------


def test_link_makes_a_second_name_for_the_same_nodeid(guest: GuestSession, export) -> None:
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    dir_id = guest.lookup(ROOT_ID, b"dir").nodeid
    entry = guest.link(file_id, dir_id, b"again")
    assert entry.nodeid == file_id and entry.attr.st_nlink == 2
    assert os.stat(export / "dir" / "again").st_ino == os.stat(export / "file").st_ino
    (export / "file").write_bytes(b"changed")
    assert (export / "dir" / "again").read_bytes() == b"changed"


def test_link_of_a_symlink_links_the_symlink_not_its_target(guest: GuestSession,
                                                            export: Path) -> None:
    os.symlink("/etc/passwd", export / "outward")
    link_id = guest.lookup(ROOT_ID, b"outward").nodeid
    guest.link(link_id, ROOT_ID, b"outward2")
    assert os.readlink(export / "outward2") == "/etc/passwd"
    assert os.lstat(export / "outward2").st_ino == os.lstat(export / "outward").st_ino


def test_link_errnos(guest: GuestSession, export: Path) -> None:
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    dir_id = guest.lookup(ROOT_ID, b"dir").nodeid
    expect_errno(errno.ESTALE, guest.link, file_id, STALE, b"x")  # stale new parent
    expect_errno(errno.ESTALE, guest.link, STALE, ROOT_ID, b"x")  # stale source
    expect_errno(errno.EPERM, guest.link, dir_id, ROOT_ID, b"x")  # a directory
    expect_errno(errno.EEXIST, guest.link, file_id, ROOT_ID, b"dir")
    expect_errno(errno.ENOTDIR, guest.link, file_id, file_id, b"x")
    for name, code in ((b"..", errno.EINVAL), (b"a/b", errno.EINVAL), (b"", errno.ENOENT),
                       (b"n" * 256, errno.ENAMETOOLONG)):
        expect_errno(code, guest.link, file_id, ROOT_ID, name)
    os.unlink(export / "file")  # the host removed the last name: nothing to link
    expect_errno(errno.ENOENT, guest.link, file_id, ROOT_ID, b"revived")
    assert not (export / "revived").exists()


def test_link_in_a_read_only_export_is_erofs_first(ro_guest: GuestSession) -> None:
    file_id = ro_guest.lookup(ROOT_ID, b"file").nodeid
    dir_id = ro_guest.lookup(ROOT_ID, b"dir").nodeid
    for source, name in ((file_id, b"x"), (file_id, b"dir"), (dir_id, b"x"), (STALE, b"..")):
        expect_errno(errno.EROFS, ro_guest.link, source, ROOT_ID, name)


# -- MKNOD ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFREG, 0])
def test_mknod_makes_fifos_sockets_and_regular_files(guest: GuestSession, export: Path,
                                                      kind: int) -> None:
    entry = guest.mknod(ROOT_ID, b"node", kind | 0o640, 0)
    host = os.lstat(export / "node")
    assert stat.S_IFMT(host.st_mode) == (kind or stat.S_IFREG)
    assert stat.S_IMODE(host.st_mode) == 0o640 and entry.attr.st_ino == host.st_ino
    assert guest.getattr(entry.nodeid).st_ino == host.st_ino


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK])
def test_mknod_refuses_device_nodes(guest: GuestSession, export: Path, kind: int) -> None:
    expect_errno(errno.EPERM, guest.mknod, ROOT_ID, b"disk", kind | 0o666, os.makedev(8, 0))
    expect_errno(errno.EPERM, guest.mknod, ROOT_ID, b"null", kind | 0o666, os.makedev(1, 3))
    assert sorted(os.listdir(export)) == ["dir", "file"]  # nothing was made


def test_mknod_errnos(guest: GuestSession, ro_guest: GuestSession) -> None:
    expect_errno(errno.ESTALE, guest.mknod, STALE, b"f", stat.S_IFIFO | 0o644, 0)
    expect_errno(errno.EINVAL, guest.mknod, ROOT_ID, b"d", stat.S_IFDIR | 0o755, 0)
    expect_errno(errno.EINVAL, guest.mknod, ROOT_ID, b"l", stat.S_IFLNK | 0o777, 0)
    expect_errno(errno.EEXIST, guest.mknod, ROOT_ID, b"file", stat.S_IFIFO | 0o644, 0)
    expect_errno(errno.EINVAL, guest.mknod, ROOT_ID, b"..", stat.S_IFIFO | 0o644, 0)
    for kind in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFDIR):
        expect_errno(errno.EROFS, ro_guest.mknod, ROOT_ID, b"file", kind | 0o644, 0)


def test_a_fifo_made_by_a_guest_is_never_opened_by_the_host(guest: GuestSession) -> None:
    fifo = guest.mknod(ROOT_ID, b"fifo", stat.S_IFIFO | 0o644, 0).nodeid
    expect_errno(errno.EACCES, guest.open, fifo, os.O_RDONLY)  # would block on the host


# -- extended attributes ------------------------------------------------------------


def test_user_xattrs_round_trip(guest: GuestSession, export: Path) -> None:
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    guest.setxattr(file_id, b"user.colour", b"blue\0green", 0)
    assert os.getxattr(export / "file", "user.colour") == b"blue\0green"
    assert guest.getxattr(file_id, b"user.colour", 0) == 10  # the size probe
    assert guest.getxattr(file_id, b"user.colour", 10) == b"blue\0green"
    expect_errno(errno.ERANGE, guest.getxattr, file_id, b"user.colour", 9)
    os.setxattr(export / "file", "user.host", b"h")  # the host's own are seen at once
    assert guest.listxattr(file_id, 0) == len(b"user.colour\0user.host\0")
    assert sorted(guest.listxattr(file_id, 100).split(b"\0")[:-1]) == [b"user.colour",
                                                                      b"user.host"]
    expect_errno(errno.ERANGE, guest.listxattr, file_id, 5)
    guest.setxattr(file_id, b"user.colour", b"red", 2)  # XATTR_REPLACE
    expect_errno(errno.EEXIST, guest.setxattr, file_id, b"user.colour", b"x", 1)
    expect_errno(errno.ENODATA, guest.setxattr, file_id, b"user.none", b"x", 2)
    guest.removexattr(file_id, b"user.colour")
    expect_errno(errno.ENODATA, guest.getxattr, file_id, b"user.colour", 0)
    expect_errno(errno.ENODATA, guest.removexattr, file_id, b"user.colour")
    dir_id = guest.lookup(ROOT_ID, b"dir").nodeid
    guest.setxattr(dir_id, b"user.d", b"1", 0)  # directories have them too
    assert os.getxattr(export / "dir", "user.d") == b"1"


@pytest.mark.parametrize("name", [b"trusted.overlay.redirect", b"security.capability",
                                  b"security.selinux", b"system.posix_acl_access", b"user.",
                                  b"other.x"])
def test_xattrs_outside_user_are_neither_set_nor_seen(guest: GuestSession, export: Path,
                                                      name: bytes) -> None:
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    expect_errno(errno.EPERM, guest.setxattr, file_id, name, b"\x01\x00\x00\x02", 0)
    expect_errno(errno.EPERM, guest.removexattr, file_id, name)
    expect_errno(errno.ENODATA, guest.getxattr, file_id, name, 0)
    assert name.decode() not in os.listxattr(export / "file")


def test_host_trusted_xattrs_stay_hidden(guest: GuestSession, export: Path) -> None:
    os.setxattr(export / "file", "trusted.secret", b"host only")
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    expect_errno(errno.ENODATA, guest.getxattr, file_id, b"trusted.secret", 100)
    assert guest.listxattr(file_id, 0) == 0


def test_xattr_errnos(guest: GuestSession, ro_guest: GuestSession, export: Path) -> None:
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    for call in (lambda: guest.setxattr(STALE, b"user.a", b"", 0),
                 lambda: guest.getxattr(STALE, b"user.a", 0),
                 lambda: guest.listxattr(STALE, 0),
                 lambda: guest.removexattr(STALE, b"user.a")):
        expect_errno(errno.ESTALE, call)
    expect_errno(errno.ERANGE, guest.setxattr, file_id, b"", b"v", 0)
    expect_errno(errno.ERANGE, guest.getxattr, file_id, b"user." + b"n" * 251, 0)
    expect_errno(errno.EINVAL, guest.setxattr, file_id, b"user.a", b"v", 4)
    expect_errno(errno.EINVAL, guest.setxattr, file_id, b"user.a", b"v", 3)
    expect_errno(errno.E2BIG, guest.setxattr, file_id, b"user.a", bytes(65537), 0)
    os.symlink("file", export / "link")
    link_id = guest.lookup(ROOT_ID, b"link").nodeid
    expect_errno(errno.EPERM, guest.setxattr, link_id, b"user.a", b"v", 0)
    expect_errno(errno.EPERM, guest.removexattr, link_id, b"user.a")
    expect_errno(errno.ENODATA, guest.getxattr, link_id, b"user.a", 0)
    assert guest.listxattr(link_id, 0) == 0
    assert os.listxattr(export / "file") == []  # the symlink's target was never touched
    ro_file = ro_guest.lookup(ROOT_ID, b"file").nodeid
    for name in (b"user.a", b"trusted.a", b""):
        expect_errno(errno.EROFS, ro_guest.setxattr, ro_file, name, b"v", 0)
        expect_errno(errno.EROFS, ro_guest.removexattr, ro_file, name)


def test_xattrs_of_special_files_are_read_without_opening_them(guest: GuestSession,
                                                               export: Path) -> None:
    os.mkfifo(export / "fifo")
    fifo = guest.lookup(ROOT_ID, b"fifo").nodeid
    assert guest.listxattr(fifo, 0) == 0  # an open of a FIFO would hang here
    expect_errno(errno.ENODATA, guest.getxattr, fifo, b"user.a", 0)
    expect_errno(errno.EPERM, guest.setxattr, fifo, b"user.a", b"v", 0)  # Linux's rule


# -- FALLOCATE ----------------------------------------------------------------------


def test_fallocate_reserves_punches_and_zeroes(guest: GuestSession, export: Path) -> None:
    (export / "file").write_bytes(b"x" * 3 * 4096)
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    fh = guest.open(file_id, os.O_RDWR)
    guest.fallocate(fh, 0, 5 * 4096, 0)
    assert os.stat(export / "file").st_size == 5 * 4096  # mode 0 extends
    guest.fallocate(fh, 0, 8 * 4096, KEEP_SIZE)
    assert os.stat(export / "file").st_size == 5 * 4096
    guest.fallocate(fh, 4096, 4096, PUNCH_HOLE | KEEP_SIZE)
    data = (export / "file").read_bytes()
    assert data[:4096] == b"x" * 4096 and data[4096:8192] == bytes(4096)
    assert data[8192:12288] == b"x" * 4096
    guest.fallocate(fh, 8192, 100, ZERO_RANGE)
    assert (export / "file").read_bytes()[8192:8292] == bytes(100)
    guest.fallocate(fh, 6 * 4096, 4096, ZERO_RANGE)
    assert os.stat(export / "file").st_size == 7 * 4096  # without KEEP_SIZE it grows


def test_fallocate_errnos(guest: GuestSession, ro_guest: GuestSession) -> None:
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    reader = guest.open(file_id, os.O_RDONLY)
    writer = guest.open(file_id, os.O_RDWR)
    expect_errno(errno.EBADF, guest.fallocate, STALE, 0, 10, 0)
    expect_errno(errno.EBADF, guest.fallocate, reader, 0, 10, 0)
    expect_errno(errno.EBADF, guest.fallocate, guest.opendir(ROOT_ID), 0, 10, 0)
    expect_errno(errno.EOPNOTSUPP, guest.fallocate, writer, 0, 4096, PUNCH_HOLE)
    expect_errno(errno.EOPNOTSUPP, guest.fallocate, writer, 0, 4096, COLLAPSE_RANGE)
    expect_errno(errno.EOPNOTSUPP, guest.fallocate, writer, 0, 4096, 0x80)
    expect_errno(errno.EINVAL, guest.fallocate, writer, 0, 0, 0)
    expect_errno(errno.EINVAL, guest.fallocate, writer, -1, 10, 0)
    expect_errno(errno.EFBIG, guest.fallocate, writer, (1 << 63) - 10, 20, 0)
    ro_file = ro_guest.lookup(ROOT_ID, b"file").nodeid
    ro_reader = ro_guest.open(ro_file, os.O_RDONLY)
    for mode in (0, KEEP_SIZE, PUNCH_HOLE | KEEP_SIZE, ZERO_RANGE, COLLAPSE_RANGE):
        expect_errno(errno.EROFS, ro_guest.fallocate, ro_reader, 0, 4096, mode)


# -- SYNCFS -------------------------------------------------------------------------


def test_syncfs(guest: GuestSession, ro_guest: GuestSession) -> None:
    guest.syncfs(ROOT_ID)
    guest.syncfs(guest.lookup(ROOT_ID, b"file").nodeid)  # any live nodeid names the export
    ro_guest.syncfs(ROOT_ID)  # not a write: a read-only export serves it
    expect_errno(errno.ESTALE, guest.syncfs, STALE)
