"""Namespace requests: LOOKUP, FORGET, GETATTR, MKDIR, SYMLINK, READLINK, UNLINK, RMDIR,
RENAME, OPENDIR/READDIR/RELEASEDIR, STATFS (NAMESPACE, NODEID, CONFINE)."""

import pytest

from pagefs.spec import Err, Errno, Ok
from pagefs.spec.datatypes import RENAME_EXCHANGE, RENAME_NOREPLACE, DirEntry, FileKind, StatFs

BAD_NAMES = [(b"a/b", {Errno.EINVAL}), (b"a\0", {Errno.EINVAL}),
             (b"toolong", {Errno.ENAMETOOLONG}), (b"", {Errno.EINVAL, Errno.ENOENT})]


def test_lookup_hands_out_the_next_nodeid_and_counts_lookups(spec) -> None:
    s = spec()
    s.file(b"a")
    s.ok("host.mkdir", b"d", 0o755)
    entry = s.ok("LOOKUP", 0, 1, b"a")
    assert entry.nodeid == 2 and entry.attr.kind is FileKind.REG
    assert s.ok("LOOKUP", 0, 1, b"a").nodeid == 2
    assert s.state.guests[0].nodes[2].nlookup == 2
    assert s.ok("LOOKUP", 0, 1, b"d").nodeid == 3
    assert s.ok("LOOKUP", 1, 1, b"d").nodeid == 2  # nodeids are per guest
    assert s.err("LOOKUP", 0, 1, b"zz") == {Errno.ENOENT}
    assert s.err("LOOKUP", 0, 2, b"x") == {Errno.ENOTDIR}


@pytest.mark.parametrize("name,errnos", BAD_NAMES)
def test_bad_names_are_refused_everywhere(spec, name: bytes, errnos: set) -> None:
    s = spec()
    s.file(b"a")
    assert s.err("LOOKUP", 0, 1, name) == errnos
    assert s.err("MKDIR", 0, 1, name, 0o755) == errnos
    assert s.err("CREATE", 0, 1, name, 2, 0o644) == errnos
    assert s.err("SYMLINK", 0, 1, name, b"t") == errnos
    assert s.err("UNLINK", 0, 1, name) == errnos
    assert s.err("RMDIR", 0, 1, name) == errnos
    assert s.err("RENAME", 0, 1, b"a", 1, name, 0) == errnos


def test_dot_and_dotdot_never_leave_the_export(spec) -> None:
    s = spec()
    s.ok("host.mkdir", b"d", 0o755)
    d = s.lookup(0, b"d")
    up = {o.result for o in s.outcomes("LOOKUP", 0, d, b"..")}
    assert {r.value.attr.ino for r in up if hasattr(r, "value")} == {1}
    at_root = s.outcomes("LOOKUP", 0, 1, b"..")  # CONFINE: the root's parent is the root
    assert {o.result.value.attr.ino for o in at_root if hasattr(o.result, "value")} == {1}
    assert Errno.EINVAL in {o.result.errno for o in at_root if hasattr(o.result, "errno")}
    here = s.outcomes("LOOKUP", 0, d, b".")
    assert {o.result.value.attr.ino for o in here if hasattr(o.result, "value")} == {2}


def test_dot_names_cannot_be_created_or_removed(spec) -> None:
    s = spec()
    for name in (b".", b".."):
        assert s.err("MKDIR", 0, 1, name, 0o755) == {Errno.EEXIST, Errno.EINVAL}
        assert Errno.EINVAL in s.err("RMDIR", 0, 1, name)
        assert s.err("UNLINK", 0, 1, name) >= {Errno.EISDIR, Errno.EINVAL}
        assert s.err("RENAME", 0, 1, name, 1, b"x", 0) == {Errno.EBUSY, Errno.EINVAL}


def test_forget_to_zero_makes_the_nodeid_stale_for_good(spec) -> None:
    s = spec()
    s.file(b"a", b"data")
    s.lookup(0, b"a")
    s.lookup(0, b"a")
    s.ok("FORGET", 0, 2, 1)
    s.ok("GETATTR", 0, 2)
    s.ok("FORGET", 0, 2, 1)
    assert s.err("GETATTR", 0, 2) == {Errno.ESTALE, Errno.ENOENT}  # NODEID
    assert s.err("OPEN", 0, 2, 0) == {Errno.ESTALE, Errno.ENOENT}
    assert s.lookup(0, b"a") == 3  # a new nodeid, never the old one


def test_forget_never_fails(spec) -> None:
    s = spec()
    s.file(b"a")
    s.lookup(0, b"a")
    s.ok("FORGET", 0, 99, 1)  # unknown
    s.ok("FORGET", 0, 1, 5)  # the root is never forgotten
    s.ok("FORGET", 0, 2, 1000)  # more than looked up: clamped to zero
    assert set(s.state.guests[0].nodes) == {1}


def test_a_nodeid_keeps_its_inode_across_host_rename_and_replace(spec) -> None:
    s = spec()
    s.file(b"a", b"old")
    node = s.lookup(0, b"a")
    s.ok("host.rename", b"a", b"b")
    s.file(b"a", b"new!")
    assert s.ok("GETATTR", 0, node).size == 3  # still the old inode, now named b
    s.ok("host.unlink", b"b")
    attr = s.ok("GETATTR", 0, node)
    assert attr.nlink == 0 and attr.size == 3  # held by the nodeid, unlinked
    assert s.lookup(0, b"a") != node


def test_getattr_follows_host_changes_at_once(spec) -> None:
    s = spec()
    s.file(b"a", b"12")
    node = s.lookup(0, b"a")
    before = s.ok("GETATTR", 0, node)
    s.ok("host.write", b"a", 0, b"12345")
    after = s.ok("GETATTR", 0, node)
    assert after.size == 5 and after.mtime.version > before.mtime.version  # COH-META
    s.ok("host.chmod", b"a", 0o600)
    assert s.ok("GETATTR", 0, node).mode == 0o600


def test_mkdir_symlink_readlink(spec) -> None:
    s = spec()
    entry = s.ok("MKDIR", 0, 1, b"d", 0o750)
    assert entry.attr.kind is FileKind.DIR and entry.attr.mode == 0o750
    assert entry.attr.size is None  # a directory's size is left open
    assert s.err("MKDIR", 0, 1, b"d", 0o750) == {Errno.EEXIST}
    link = s.ok("SYMLINK", 0, entry.nodeid, b"l", b"../../etc/passwd")
    assert s.ok("READLINK", 0, link.nodeid) == b"../../etc/passwd"  # stored, not followed
    assert s.err("READLINK", 0, entry.nodeid) == {Errno.EINVAL}
    assert s.err("SYMLINK", 0, 1, b"m", b"") == {Errno.ENOENT}
    assert s.err("SYMLINK", 0, 1, b"m", b"a\0b") == {Errno.EINVAL}
    assert s.err("LOOKUP", 0, link.nodeid, b"x") == {Errno.ENOTDIR}  # never followed


def test_unlink_and_rmdir(spec) -> None:
    s = spec()
    s.file(b"a")
    s.ok("host.mkdir", b"d", 0o755)
    s.ok("host.create", b"d/x", 0o644)
    assert s.err("UNLINK", 0, 1, b"d") == {Errno.EISDIR, Errno.EPERM}
    assert s.err("RMDIR", 0, 1, b"a") == {Errno.ENOTDIR}
    assert s.err("RMDIR", 0, 1, b"d") == {Errno.ENOTEMPTY, Errno.EEXIST}
    assert s.err("UNLINK", 0, 1, b"nope") == {Errno.ENOENT}
    s.ok("UNLINK", 0, 1, b"a")
    d = s.lookup(0, b"d")
    s.ok("UNLINK", 0, d, b"x")
    s.ok("RMDIR", 0, 1, b"d")
    # a removed directory the guest still holds takes no new entries
    assert s.err("MKDIR", 0, d, b"y", 0o755) == {Errno.ENOENT}
    assert s.err("CREATE", 0, d, b"y", 2, 0o644) == {Errno.ENOENT}


def test_rename_rules(spec) -> None:
    s = spec()
    s.file(b"a", b"A")
    s.file(b"b", b"B")
    s.ok("host.mkdir", b"d", 0o755)
    s.ok("host.mkdir", b"e", 0o755)
    s.ok("host.create", b"e/x", 0o644)
    assert s.err("RENAME", 0, 1, b"a", 1, b"b", RENAME_NOREPLACE) == {Errno.EEXIST}
    assert s.err("RENAME", 0, 1, b"a", 1, b"d", 0) == {Errno.EISDIR}
    assert s.err("RENAME", 0, 1, b"d", 1, b"a", 0) == {Errno.ENOTDIR}
    assert s.err("RENAME", 0, 1, b"d", 1, b"e", 0) == {Errno.ENOTEMPTY, Errno.EEXIST}
    d = s.lookup(0, b"d")
    assert s.err("RENAME", 0, 1, b"d", d, b"in", 0) == {Errno.EINVAL}  # into itself
    assert s.err("RENAME", 0, 1, b"zz", 1, b"y", 0) == {Errno.ENOENT}
    assert s.err("RENAME", 0, 1, b"a", 1, b"y", 4) == {Errno.EINVAL}  # unknown flag
    s.ok("RENAME", 0, 1, b"a", 1, b"a", 0)  # the same entry: nothing happens
    assert s.err("RENAME", 0, 1, b"a", 1, b"a", RENAME_NOREPLACE) == {Errno.EEXIST}
    s.ok("RENAME", 0, 1, b"a", d, b"a", 0)
    assert s.ok("host.read", b"d/a", 0, 9) == b"A"


def test_rename_over_an_open_file_keeps_it_alive_for_its_handle(spec) -> None:
    s = spec()
    s.file(b"a", b"new")
    s.file(b"b", b"victim")
    fh = s.open(0, b"b")
    s.ok("RENAME", 0, 1, b"a", 1, b"b", 0)
    assert s.ok("READ", 0, fh, 0, 99) == b"victim"  # LIFETIME
    assert s.ok("host.read", b"b", 0, 99) == b"new"
    s.ok("WRITE", 0, fh, 0, b"V")
    assert s.ok("host.read", b"b", 0, 99) == b"new"  # the handle's inode has no name
    s.ok("RELEASE", 0, fh)
    s.ok("FORGET", 0, 2, 1)
    assert len(s.state.inodes) == 2  # root and the renamed file: the victim is freed


def test_readdir_lists_current_entries_sorted(spec) -> None:
    s = spec()
    s.file(b"b")
    s.ok("host.mkdir", b"a", 0o755)
    dh = s.ok("OPENDIR", 0, 1)
    s.ok("host.symlink", b"t", b"c")
    listing = s.ok("READDIR", 0, dh)
    assert [(e.name, e.kind) for e in listing] == [
        (b"a", FileKind.DIR), (b"b", FileKind.REG), (b"c", FileKind.LNK)]
    assert isinstance(listing[0], DirEntry)
    s.ok("RELEASEDIR", 0, dh)
    assert s.err("RELEASEDIR", 0, dh) == {Errno.EBADF}
    assert s.err("READDIR", 0, dh) == {Errno.EBADF}
    assert s.err("OPENDIR", 0, s.lookup(0, b"b")) == {Errno.ENOTDIR}


def test_directory_and_file_handles_do_not_mix(spec) -> None:
    s = spec()
    s.file(b"f")
    fh = s.open(0, b"f")
    dh = s.ok("OPENDIR", 0, 1)
    assert s.err("READDIR", 0, fh) == {Errno.EBADF}
    assert s.err("RELEASE", 0, dh) == {Errno.EBADF}
    assert s.err("READ", 0, dh, 0, 1) == {Errno.EBADF}


def test_statfs_reports_the_name_limit(spec) -> None:
    s = spec()
    assert s.ok("STATFS", 0, 1) == StatFs(namelen=6)
    assert s.err("STATFS", 0, 9) == {Errno.ESTALE, Errno.ENOENT}


def test_rename_exchange_swaps_two_names_or_is_unsupported(spec) -> None:
    s = spec()
    s.file(b"a", b"A")
    s.ok("host.mkdir", b"d", 0o755)
    fh = s.open(0, b"a")
    outcomes = s.outcomes("RENAME", 0, 1, b"a", 1, b"d", RENAME_EXCHANGE)
    assert {o.result for o in outcomes} == {Ok(None), Err(Errno.EINVAL)}
    s.state = next(o.state for o in outcomes if o.result == Ok(None))
    assert s.ok("host.stat", b"d").kind is FileKind.REG
    assert s.ok("READ", 0, fh, 0, 9) == b"A"  # the handle follows its inode
    assert s.err("RENAME", 0, 1, b"a", 1, b"zz", RENAME_EXCHANGE) == {Errno.ENOENT}
    assert s.err("RENAME", 0, 1, b"a", 1, b"d", RENAME_EXCHANGE | RENAME_NOREPLACE) == {
        Errno.EINVAL}
    a = s.lookup(0, b"a")
    s.ok("MKDIR", 0, a, b"in", 0o755)
    s.ok("MKDIR", 0, s.lookup(0, b"in", parent=a), b"x", 0o755)
    # swapping a directory with a name inside it would put it inside itself
    assert s.err("RENAME", 0, 1, b"a", s.lookup(0, b"in", parent=a), b"x",
                 RENAME_EXCHANGE) == {Errno.EINVAL}
