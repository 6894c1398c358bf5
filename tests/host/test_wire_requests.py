"""Every request through the real daemon on its real socket, with the guest's FUSE client
over vhost-user: results checked against the host directory, errnos as the guest sees
them in fuse_out_header."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct

import pytest

from pagefs.impl.client.fuse_client import FuseClient

from .conftest import expect_errno

PAGE = os.sysconf("SC_PAGE_SIZE")
LOOKUP, IN_HEADER = 1, struct.Struct("<IIQQIIII")


def raw_error(client: FuseClient, opcode: int, nodeid: int, body: bytes) -> int:
    """Send bytes the typed client would refuse to encode; the errno of the reply."""
    header = IN_HEADER.pack(IN_HEADER.size + len(body), opcode, 1 << 40, nodeid, 0, 0, 0, 0)
    reply = client.frontend.submit(1, header + body, 4096).result(30)
    _, error, unique = struct.unpack_from("<IiQ", reply)
    assert unique == 1 << 40
    return -error


def test_lookup_getattr_forget(area) -> None:
    client, top, host = area
    entry = client.lookup(top, b"file")
    assert (entry.attr.ino, entry.attr.size) == (os.stat(host / "file").st_ino, 10)
    assert client.lookup(top, b"file").nodeid == entry.nodeid
    (host / "file").write_bytes(b"grown by the host")
    assert client.getattr(entry.nodeid).attr.size == 17  # COH-META: nothing cached
    client.forget(entry.nodeid, 2)
    client.settle()  # no reply to wait for: wait until the back-end has taken it
    expect_errno(errno.ESTALE, client.getattr, entry.nodeid)
    assert client.lookup(top, b"file").nodeid > entry.nodeid  # NODEID: never reused
    expect_errno(errno.ENOENT, client.lookup, top, b"missing")
    expect_errno(errno.ENOTDIR, client.lookup, entry.nodeid + 1, b"x")
    expect_errno(errno.ESTALE, client.lookup, 10**9, b"file")
    expect_errno(errno.EINVAL, client.lookup, top, b"a/b")
    expect_errno(errno.EINVAL, client.lookup, top, b"..")
    expect_errno(errno.ENAMETOOLONG, client.lookup, top, b"n" * 256)


@pytest.mark.parametrize("name", [b"file\0", b"a\0b\0", b"\0", b"file", b"../file\0"],
                         ids=["plain", "inner-NUL", "empty", "unterminated", "dotdot"])
def test_names_as_raw_bytes(area, name: bytes) -> None:
    client, top, _ = area
    expected = {b"file\0": 0, b"\0": errno.ENOENT, b"../file\0": errno.EINVAL}
    assert raw_error(client, LOOKUP, top, name) == expected.get(name, errno.EINVAL)


def test_batch_forget(area) -> None:
    client, top, _ = area
    a, b = client.lookup(top, b"file"), client.lookup(top, b"dir")
    client.batch_forget([(a.nodeid, 1), (b.nodeid, 1)])
    client.settle()
    expect_errno(errno.ESTALE, client.getattr, a.nodeid)
    expect_errno(errno.ESTALE, client.getattr, b.nodeid)


def test_setattr(area) -> None:
    client, top, host = area
    nodeid = client.lookup(top, b"file").nodeid
    assert client.setattr(nodeid, size=3).attr.size == 3
    assert (host / "file").read_bytes() == b"012"
    assert stat.S_IMODE(client.setattr(nodeid, mode=0o100640).attr.mode) == 0o640
    out = client.setattr(nodeid, mtime_ns=1_500_000_000_250)
    assert (out.attr.mtime, out.attr.mtimensec) == (1500, 250)
    assert os.stat(host / "file").st_mtime_ns == 1_500_000_000_250
    expect_errno(errno.EISDIR, client.setattr, client.lookup(top, b"dir").nodeid, size=0)
    reader = client.open(nodeid, os.O_RDONLY).fh
    expect_errno(errno.EINVAL, client.setattr, nodeid, reader, size=0)
    expect_errno(errno.EBADF, client.setattr, nodeid, reader + 1000, size=0)


def test_symlink_readlink(area) -> None:
    client, top, host = area
    link = client.symlink(top, b"link", b"/etc/passwd")
    assert os.readlink(host / "link") == "/etc/passwd"
    assert client.readlink(link.nodeid) == b"/etc/passwd"
    expect_errno(errno.EINVAL, client.readlink, client.lookup(top, b"file").nodeid)
    expect_errno(errno.EEXIST, client.symlink, top, b"file", b"x")
    expect_errno(errno.ELOOP, client.open, link.nodeid, os.O_RDONLY)


def test_mkdir_unlink_rmdir(area) -> None:
    client, top, host = area
    made = client.mkdir(top, b"new", 0o40750)
    assert stat.S_ISDIR(made.attr.mode) and (host / "new").is_dir()
    assert stat.S_IMODE(os.stat(host / "new").st_mode) == 0o750  # the daemon's umask is 0
    expect_errno(errno.EEXIST, client.mkdir, top, b"new", 0o755)
    expect_errno(errno.ENOTEMPTY, client.rmdir, top, b"dir")
    expect_errno(errno.ENOTDIR, client.rmdir, top, b"file")
    expect_errno(errno.EISDIR, client.unlink, top, b"dir")
    expect_errno(errno.ENOENT, client.unlink, top, b"missing")
    client.rmdir(top, b"new")
    client.unlink(top, b"file")
    assert sorted(os.listdir(host)) == ["dir"]


def test_rename_and_rename2(area) -> None:
    client, top, host = area
    dir_id = client.lookup(top, b"dir").nodeid
    client.rename(top, b"file", dir_id, b"moved")
    assert (host / "dir" / "moved").read_bytes() == b"0123456789"
    expect_errno(errno.ENOENT, client.rename, top, b"file", top, b"x")
    expect_errno(errno.EEXIST, client.rename, dir_id, b"moved", dir_id, b"inner", 1)
    client.rename(dir_id, b"moved", dir_id, b"inner", 2)  # RENAME_EXCHANGE
    assert (host / "dir" / "moved").read_bytes() == b"inner"
    expect_errno(errno.EINVAL, client.rename, top, b"dir", dir_id, b"into-itself")


def test_open_read_write_flush_fsync_release(area) -> None:
    client, top, host = area
    nodeid = client.lookup(top, b"file").nodeid
    fh = client.open(nodeid, os.O_RDWR).fh
    assert client.read(nodeid, fh, 2, 4) == b"2345"
    assert client.write(nodeid, fh, 10, b"ABC") == 3
    assert (host / "file").read_bytes() == b"0123456789ABC"
    client.flush(nodeid, fh)
    client.fsync(nodeid, fh, datasync=True)
    client.release(nodeid, fh)
    expect_errno(errno.EBADF, client.read, nodeid, fh, 0, 1)
    expect_errno(errno.EBADF, client.release, nodeid, fh)
    expect_errno(errno.EBADF, client.flush, nodeid, fh)
    expect_errno(errno.EBADF, client.fsync, nodeid, fh)
    reader = client.open(nodeid, os.O_RDONLY).fh
    expect_errno(errno.EBADF, client.write, nodeid, reader, 0, b"x")
    writer = client.open(nodeid, os.O_WRONLY).fh
    expect_errno(errno.EBADF, client.read, nodeid, writer, 0, 1)
    assert writer != reader != fh  # HANDLE: fresh every time
    expect_errno(errno.EISDIR, client.open, client.lookup(top, b"dir").nodeid, os.O_RDWR)


def test_create(area) -> None:
    client, top, host = area
    created = client.create(top, b"new", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o100600)
    assert created.entry.attr.ino == os.stat(host / "new").st_ino
    assert stat.S_IMODE(os.stat(host / "new").st_mode) == 0o600
    client.write(created.entry.nodeid, created.open.fh, 0, b"made")
    assert (host / "new").read_bytes() == b"made"
    expect_errno(errno.EEXIST, client.create, top, b"new",
                 os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    expect_errno(errno.EISDIR, client.create, top, b"dir", os.O_RDWR | os.O_CREAT, 0o644)


def test_opendir_readdir_releasedir(area) -> None:
    client, top, host = area
    for i in range(40):
        (host / "dir" / f"entry-{i:03}").touch()
    dir_id = client.lookup(top, b"dir").nodeid
    fh = client.opendir(dir_id).fh
    names, offset = [], 0
    while batch := client.readdir(dir_id, fh, offset, size=512):  # several round trips
        names += [d.name for d in batch]
        offset = batch[-1].off
    assert names[:2] == [b".", b".."]
    assert sorted(names[2:]) == sorted(os.listdir(bytes(host / "dir")))
    assert len(names) == 43
    client.releasedir(dir_id, fh)
    expect_errno(errno.EBADF, client.readdir, dir_id, fh, 0)
    expect_errno(errno.ENOTDIR, client.opendir, client.lookup(top, b"file").nodeid)


def test_statfs(area) -> None:
    client, top, host = area
    ours, theirs = client.statfs(top), os.statvfs(host)
    assert (ours.blocks, ours.bsize, ours.namelen) == (theirs.f_blocks, theirs.f_bsize, 255)


def test_setupmapping_and_removemapping(area) -> None:
    client, top, host = area
    (host / "big").write_bytes(b"A" * PAGE + b"B" * PAGE)
    nodeid = client.lookup(top, b"big").nodeid
    fh = client.open(nodeid, os.O_RDWR).fh
    base = client.window.base
    client.setupmapping(nodeid, fh, PAGE, PAGE, True, 0)
    assert ctypes.string_at(base, 4) == b"BBBB"
    ctypes.memmove(base, b"STORE", 5)
    assert (host / "big").read_bytes()[PAGE:PAGE + 5] == b"STORE"  # COH-WRITE
    client.removemapping([(0, PAGE)])
    expect_errno(errno.EINVAL, client.removemapping, [(0, PAGE)])
    expect_errno(errno.EINVAL, client.setupmapping, nodeid, fh, 1, PAGE, False, 0)
    expect_errno(errno.EBADF, client.setupmapping, nodeid, fh + 99, 0, PAGE, False, 0)
    reader = client.open(nodeid, os.O_RDONLY).fh
    expect_errno(errno.EACCES, client.setupmapping, nodeid, reader, 0, PAGE, True, 0)
    client.release(nodeid, reader)
    client.setupmapping(nodeid, fh, 0, PAGE, False, PAGE)
    client.release(nodeid, fh)  # LIFETIME: the mapping stays
    assert ctypes.string_at(base + PAGE, 4) == b"AAAA"
    client.removemapping([(PAGE, PAGE)])


def test_link_mknod_xattrs_fallocate_syncfs_over_the_wire(area) -> None:
    """The opcodes a Linux guest's programs meet (ln, mkfifo, setfattr, fallocate, sync),
    through the real daemon: replies decode and the host sees each change."""
    client, top, host = area
    file_id = client.lookup(top, b"file").nodeid
    assert client.link(file_id, top, b"hard").nodeid == file_id
    assert os.stat(host / "hard").st_ino == os.stat(host / "file").st_ino
    fifo = client.mknod(top, b"fifo", stat.S_IFIFO | 0o600)
    assert stat.S_ISFIFO(os.lstat(host / "fifo").st_mode) and fifo.attr.mode & stat.S_IFIFO
    expect_errno(errno.EPERM, client.mknod, top, b"dev", stat.S_IFBLK | 0o600, 0x0800)
    client.setxattr(file_id, b"user.k", b"v\0w")
    assert client.getxattr(file_id, b"user.k", 0) == 3
    assert client.getxattr(file_id, b"user.k") == b"v\0w"
    assert client.listxattr(file_id, 0) == len(b"user.k\0")
    assert client.listxattr(file_id) == [b"user.k"]
    expect_errno(errno.ERANGE, client.getxattr, file_id, b"user.k", 2)
    expect_errno(errno.ENODATA, client.getxattr, file_id, b"security.capability", 0)
    expect_errno(errno.EPERM, client.setxattr, file_id, b"trusted.x", b"1")
    client.removexattr(file_id, b"user.k")
    assert os.listxattr(host / "file") == []
    fh = client.open(file_id, os.O_RDWR).fh
    client.fallocate(file_id, fh, 0, 8192)
    client.fallocate(file_id, fh, 0, 4096, 0x03)  # punch hole, keep size
    assert (host / "file").read_bytes() == bytes(4096) * 2
    expect_errno(errno.EOPNOTSUPP, client.fallocate, file_id, fh, 0, 4096, 0x02)
    client.syncfs()
    client.release(file_id, fh)
