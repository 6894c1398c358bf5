"""The passthrough layer's namespace requests on a real export directory: LOOKUP, FORGET,
GETATTR, MKDIR, UNLINK, RMDIR, RENAME, SYMLINK, READLINK, READDIR, STATFS (NAMESPACE,
NODEID, COH-META)."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from pagefs.impl.host.passthrough import GuestSession, PassthroughFS
from pagefs.impl.protocol.constants import FUSE_ROOT_ID as ROOT_ID

from .conftest import expect_errno

BAD_NAMES = [
    (b"", errno.ENOENT),
    (b"a/b", errno.EINVAL),
    (b"/etc", errno.EINVAL),
    (b"a\0b", errno.EINVAL),
    (b".", errno.EINVAL),
    (b"..", errno.EINVAL),
    (b"x" * 256, errno.ENAMETOOLONG),
]

NAME_TAKING = {
    "lookup": lambda g, n: g.lookup(ROOT_ID, n),
    "mkdir": lambda g, n: g.mkdir(ROOT_ID, n, 0o755),
    "symlink": lambda g, n: g.symlink(ROOT_ID, n, b"target"),
    "unlink": lambda g, n: g.unlink(ROOT_ID, n),
    "rmdir": lambda g, n: g.rmdir(ROOT_ID, n),
    "rename-from": lambda g, n: g.rename(ROOT_ID, n, ROOT_ID, b"fresh"),
    "rename-to": lambda g, n: g.rename(ROOT_ID, b"file", ROOT_ID, n),
    "create": lambda g, n: g.create(ROOT_ID, n, os.O_RDWR | os.O_CREAT, 0o644),
}


@pytest.mark.parametrize("op", sorted(NAME_TAKING))
@pytest.mark.parametrize(("name", "code"), BAD_NAMES, ids=lambda v: repr(v)[:12])
def test_bad_names_are_refused_by_every_request_that_takes_one(
        guest: GuestSession, export, op: str, name: bytes, code: int) -> None:
    before = sorted(os.listdir(export))
    expect_errno(code, NAME_TAKING[op], guest, name)
    assert sorted(os.listdir(export)) == before


def test_longest_name_is_a_name(guest: GuestSession, export) -> None:
    name = b"n" * 255
    expect_errno(errno.ENOENT, guest.lookup, ROOT_ID, name)
    entry = guest.mkdir(ROOT_ID, name, 0o700)
    assert stat.S_ISDIR(entry.attr.st_mode)
    assert (export / name.decode()).is_dir()


def test_lookup_returns_the_host_attributes(guest: GuestSession, export) -> None:
    entry = guest.lookup(ROOT_ID, b"file")
    host = os.stat(export / "file")
    assert entry.nodeid > ROOT_ID
    assert (entry.attr.st_ino, entry.attr.st_size, entry.attr.st_mode) == (
        host.st_ino, host.st_size, host.st_mode)


def test_same_inode_same_nodeid_and_hard_links_share_it(guest: GuestSession, export) -> None:
    os.link(export / "file", export / "alias")
    first = guest.lookup(ROOT_ID, b"file")
    again = guest.lookup(ROOT_ID, b"file")
    alias = guest.lookup(ROOT_ID, b"alias")
    assert first.nodeid == again.nodeid == alias.nodeid
    assert first.generation == alias.generation


def test_lookup_errors(guest: GuestSession) -> None:
    expect_errno(errno.ENOENT, guest.lookup, ROOT_ID, b"missing")
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    expect_errno(errno.ENOTDIR, guest.lookup, file_id, b"anything")
    expect_errno(errno.ESTALE, guest.lookup, 999_999, b"file")


def test_forget_counts_lookups_and_nodeids_are_never_reused(guest: GuestSession) -> None:
    nodeid = guest.lookup(ROOT_ID, b"file").nodeid
    guest.lookup(ROOT_ID, b"file")
    guest.forget(nodeid, 1)
    assert guest.getattr(nodeid).st_size == 10  # one lookup still held
    guest.forget(nodeid, 1)
    expect_errno(errno.ESTALE, guest.getattr, nodeid)
    renewed = guest.lookup(ROOT_ID, b"file").nodeid
    assert renewed > nodeid
    guest.forget(renewed, 5)  # more than held: gone, no error
    guest.forget(renewed, 1)  # unknown: FORGET has no reply, nothing to fail
    guest.forget(ROOT_ID, 1)  # the root stays
    assert stat.S_ISDIR(guest.getattr(ROOT_ID).st_mode)


def test_sessions_have_their_own_nodeids(fs: PassthroughFS) -> None:
    one, two = fs.session(), fs.session()
    try:
        a = one.lookup(ROOT_ID, b"dir")
        one.forget(a.nodeid, 1)
        b = two.lookup(ROOT_ID, b"dir")
        expect_errno(errno.ESTALE, one.getattr, a.nodeid)
        assert two.getattr(b.nodeid).st_ino == a.attr.st_ino
    finally:
        one.close()
        two.close()


def test_host_changes_are_seen_at_the_next_request(guest: GuestSession, export) -> None:
    entry = guest.lookup(ROOT_ID, b"file")
    (export / "file").write_bytes(b"longer than before")
    assert guest.getattr(entry.nodeid).st_size == len(b"longer than before")
    os.chmod(export / "file", 0o600)
    assert stat.S_IMODE(guest.getattr(entry.nodeid).st_mode) == 0o600
    os.unlink(export / "file")
    assert guest.getattr(entry.nodeid).st_nlink == 0  # the nodeid still names that inode
    expect_errno(errno.ENOENT, guest.lookup, ROOT_ID, b"file")
    (export / "file").write_bytes(b"new")
    fresh = guest.lookup(ROOT_ID, b"file")
    assert fresh.nodeid != entry.nodeid


def test_mkdir_rmdir_unlink_errnos(guest: GuestSession, export) -> None:
    entry = guest.mkdir(ROOT_ID, b"new", 0o751)
    assert stat.S_ISDIR(entry.attr.st_mode)
    expect_errno(errno.EEXIST, guest.mkdir, ROOT_ID, b"new", 0o755)
    expect_errno(errno.EEXIST, guest.mkdir, ROOT_ID, b"file", 0o755)
    dir_id = guest.lookup(ROOT_ID, b"dir").nodeid
    expect_errno(errno.ENOTEMPTY, guest.rmdir, ROOT_ID, b"dir")
    expect_errno(errno.ENOTDIR, guest.rmdir, ROOT_ID, b"file")
    expect_errno(errno.ENOENT, guest.rmdir, ROOT_ID, b"missing")
    expect_errno(errno.EISDIR, guest.unlink, ROOT_ID, b"dir")
    expect_errno(errno.ENOENT, guest.unlink, ROOT_ID, b"missing")
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    expect_errno(errno.ENOTDIR, guest.mkdir, file_id, b"sub", 0o755)
    guest.unlink(dir_id, b"inner")
    guest.rmdir(ROOT_ID, b"dir")
    guest.rmdir(ROOT_ID, b"new")
    guest.unlink(ROOT_ID, b"file")
    assert os.listdir(export) == []


def test_rename_and_its_flags(guest: GuestSession, export) -> None:
    dir_id = guest.lookup(ROOT_ID, b"dir").nodeid
    guest.rename(ROOT_ID, b"file", dir_id, b"moved")
    assert (export / "dir" / "moved").read_bytes() == b"0123456789"
    expect_errno(errno.ENOENT, guest.rename, ROOT_ID, b"file", ROOT_ID, b"x")
    noreplace, exchange = 1, 2
    expect_errno(errno.EEXIST, guest.rename, dir_id, b"moved", dir_id, b"inner", noreplace)
    guest.rename(dir_id, b"moved", dir_id, b"inner", exchange)
    assert (export / "dir" / "inner").read_bytes() == b"0123456789"
    assert (export / "dir" / "moved").read_bytes() == b"inner"
    expect_errno(errno.EINVAL, guest.rename, dir_id, b"moved", dir_id, b"x", 8)
    expect_errno(errno.EINVAL, guest.rename, ROOT_ID, b"dir", dir_id, b"inside")
    (export / "full").mkdir()
    (export / "full" / "f").touch()
    (export / "empty").mkdir()
    expect_errno(errno.ENOTEMPTY, guest.rename, ROOT_ID, b"empty", ROOT_ID, b"full")
    expect_errno(errno.EISDIR, guest.rename, dir_id, b"inner", ROOT_ID, b"empty")
    guest.rename(ROOT_ID, b"full", ROOT_ID, b"empty")
    assert sorted(os.listdir(export)) == ["dir", "empty"]


def test_symlink_and_readlink(guest: GuestSession, export) -> None:
    entry = guest.symlink(ROOT_ID, b"link", b"../../outside/target")
    assert stat.S_ISLNK(entry.attr.st_mode)
    assert os.readlink(export / "link") == "../../outside/target"
    assert guest.readlink(entry.nodeid) == b"../../outside/target"
    expect_errno(errno.EEXIST, guest.symlink, ROOT_ID, b"file", b"x")
    expect_errno(errno.ENOENT, guest.symlink, ROOT_ID, b"empty-target", b"")
    expect_errno(errno.EINVAL, guest.readlink, guest.lookup(ROOT_ID, b"file").nodeid)


def test_readdir_lists_and_resumes(guest: GuestSession, export) -> None:
    for i in range(20):
        (export / "dir" / f"e{i:02}").touch()
    dir_id = guest.lookup(ROOT_ID, b"dir").nodeid
    fh = guest.opendir(dir_id)
    everything = guest.readdir(fh, 0)
    names = [e.name for e in everything]
    assert sorted(names) == sorted([b".", b"..", b"inner"] + [f"e{i:02}".encode()
                                                             for i in range(20)])
    assert [e.offset for e in everything] == list(range(1, len(everything) + 1))
    resumed = guest.readdir(fh, everything[9].offset)
    assert resumed == everything[10:]
    assert guest.readdir(fh, everything[-1].offset) == []
    inner = next(e for e in everything if e.name == b"inner")
    assert inner.type == stat.S_IFREG >> 12
    assert inner.ino == os.stat(export / "dir" / "inner").st_ino
    (export / "dir" / "late").touch()
    assert b"late" in [e.name for e in guest.readdir(fh, 0)]  # offset 0 rereads
    guest.releasedir(fh)
    expect_errno(errno.EBADF, guest.readdir, fh, 0)
    expect_errno(errno.EBADF, guest.releasedir, fh)


def test_readdir_lists_dot_and_dot_dot_first(guest: GuestSession, export) -> None:
    """A Linux guest shows what the server lists; at the export root '..' is the root
    itself, so nothing above the export is revealed."""
    root_ino = os.stat(export).st_ino
    fh = guest.opendir(ROOT_ID)
    listing = guest.readdir(fh, 0)
    assert [(e.name, e.ino, e.type, e.offset) for e in listing[:2]] == [
        (b".", root_ino, stat.S_IFDIR >> 12, 1), (b"..", root_ino, stat.S_IFDIR >> 12, 2)]
    assert sorted(e.name for e in listing[2:]) == [b"dir", b"file"]
    assert guest.readdir(fh, 1)[0].name == b".."  # resumes after '.'
    guest.releasedir(fh)
    sub = guest.opendir(guest.lookup(ROOT_ID, b"dir").nodeid)
    dots = guest.readdir(sub, 0)[:2]
    assert [(e.name, e.ino) for e in dots] == [
        (b".", os.stat(export / "dir").st_ino), (b"..", root_ino)]
    guest.releasedir(sub)


def test_opendir_errors(guest: GuestSession) -> None:
    file_id = guest.lookup(ROOT_ID, b"file").nodeid
    expect_errno(errno.ENOTDIR, guest.opendir, file_id)
    expect_errno(errno.ESTALE, guest.opendir, 424242)
    expect_errno(errno.EINVAL, guest.readdir, guest.opendir(ROOT_ID), -1)


def test_statfs_is_the_host_filesystems(guest: GuestSession, export) -> None:
    ours = guest.statfs(ROOT_ID)
    host = os.statvfs(export)
    assert (ours.f_bsize, ours.f_blocks, ours.f_namemax) == (
        host.f_bsize, host.f_blocks, host.f_namemax)


def test_a_stale_parent_is_stale_whatever_the_name(guest: GuestSession) -> None:
    for name in (b"file", b"", b"a/b", b".."):
        expect_errno(errno.ESTALE, guest.lookup, 777, name)
        expect_errno(errno.ESTALE, guest.mkdir, 777, name, 0o755)
        expect_errno(errno.ESTALE, guest.unlink, 777, name)
