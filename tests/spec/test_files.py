"""Files and handles: OPEN, CREATE, READ, WRITE, FLUSH, FSYNC, RELEASE, SETATTR
(HANDLE, ACCESS-MODE, DURABLE, LIFETIME, RO-EXPORT)."""

from dataclasses import replace

import pytest

from pagefs.spec import Err, Errno, Ok
from pagefs.spec.datatypes import O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, Created
from pagefs.spec.explore import SMALL


def test_handles_are_fresh_numbers_and_a_second_release_fails(spec) -> None:
    s = spec()
    s.file(b"f", b"x")
    first = s.open(0, b"f")
    second = s.open(0, b"f")
    assert (first, second) == (1, 2)
    s.ok("RELEASE", 0, first)
    assert s.err("RELEASE", 0, first) == {Errno.EBADF}  # HANDLE
    assert s.err("READ", 0, first, 0, 1) == {Errno.EBADF}
    assert s.open(0, b"f") == 3  # never the released number again
    assert s.open(1, b"f") == 1  # handles are per guest


def test_access_mode_bounds_read_and_write(spec) -> None:
    s = spec()
    s.file(b"f", b"abc")
    ro = s.open(0, b"f", O_RDONLY)
    wo = s.open(0, b"f", O_WRONLY)
    assert s.err("WRITE", 0, ro, 0, b"x") == {Errno.EBADF}  # ACCESS-MODE
    assert s.err("READ", 0, wo, 0, 1) == {Errno.EBADF}
    assert s.ok("WRITE", 0, wo, 1, b"X") == 1
    assert s.ok("READ", 0, ro, 0, 9) == b"aXc"
    node = s.lookup(0, b"f")
    assert s.err("OPEN", 0, node, 3) == {Errno.EINVAL}


def test_read_and_write_edges(spec) -> None:
    s = spec()
    s.file(b"f", b"abc")
    fh = s.open(0, b"f")
    assert s.ok("READ", 0, fh, 3, 5) == b""  # at end of file: no bytes, no error
    assert s.ok("READ", 0, fh, 10, 5) == b""
    assert s.err("READ", 0, fh, -1, 5) == {Errno.EINVAL}
    assert s.ok("WRITE", 0, fh, 5, b"Z") == 1
    assert s.ok("host.read", b"f", 0, 9) == b"abc\0\0Z"  # the hole reads as zeros
    assert s.ok("WRITE", 0, fh, 0, b"") == 0


def test_write_is_seen_by_host_and_mappings_and_durable_after_fsync(spec) -> None:
    s = spec()
    s.file(b"f", bytes(20))
    fh = s.mapped(0, b"f", writable=False)
    s.ok("WRITE", 0, fh, 0, b"hi")
    assert s.ok("LOAD", 0, 0, 2) == b"hi"
    assert s.state.inodes[2].dirty
    s.ok("FSYNC", 0, fh, False)
    assert not s.state.inodes[2].dirty  # DURABLE
    ro = s.open(1, b"f", O_RDONLY)
    s.ok("host.write", b"f", 0, b"H")
    s.ok("FSYNC", 1, ro, True)  # fsync through a read-only handle works too
    assert not s.state.inodes[2].dirty
    assert s.err("FSYNC", 0, 99, False) == {Errno.EBADF}


def test_store_then_fsync_is_durable(spec) -> None:
    s = spec()
    s.file(b"f", bytes(20))
    fh = s.mapped(0, b"f")
    s.ok("FSYNC", 0, fh, False)
    s.ok("STORE", 0, 0, b"x")
    assert s.state.inodes[2].dirty
    s.ok("FSYNC", 0, fh, False)
    assert not s.state.inodes[2].dirty


def test_flush_needs_a_live_handle(spec) -> None:
    s = spec()
    s.file(b"f")
    fh = s.open(0, b"f")
    state = s.state
    s.ok("FLUSH", 0, fh)
    assert s.state == state
    assert s.err("FLUSH", 0, fh + 1) == {Errno.EBADF}


def test_open_truncates_with_o_trunc(spec) -> None:
    s = spec()
    s.file(b"f", b"abc")
    fh = s.open(0, b"f", O_RDWR | O_TRUNC)
    assert s.ok("READ", 0, fh, 0, 9) == b""


def test_open_of_directories_symlinks_and_fifos(spec) -> None:
    s = spec()
    s.ok("host.mkdir", b"d", 0o755)
    s.ok("host.symlink", b"/etc/passwd", b"l")
    s.ok("host.mkfifo", b"p", 0o644)
    d, link, fifo = (s.lookup(0, n) for n in (b"d", b"l", b"p"))
    assert s.err("OPEN", 0, d, O_RDWR) == {Errno.EISDIR}
    results = s.results("OPEN", 0, d, O_RDONLY)  # servers differ: both allowed
    assert len(results) == 2 and isinstance(results[0], Ok)
    assert s.err("OPEN", 0, link, O_RDONLY) == {Errno.ELOOP}  # CONFINE: never followed
    assert s.err("OPEN", 0, fifo, O_RDONLY) == {Errno.ENXIO, Errno.EACCES, Errno.EPERM}


def test_create_makes_and_opens_a_file(spec) -> None:
    s = spec()
    created = s.ok("CREATE", 0, 1, b"n", O_RDWR, 0o640)
    assert isinstance(created, Created) and created.fh == 1
    assert created.entry.attr.mode == 0o640 and created.entry.attr.size == 0
    s.ok("WRITE", 0, created.fh, 0, b"data")
    assert s.err("CREATE", 0, 1, b"n", O_RDWR | O_EXCL, 0o640) == {Errno.EEXIST}
    again = s.ok("CREATE", 0, 1, b"n", O_RDWR | O_TRUNC, 0o600)  # exists: opened
    assert again.entry.nodeid == created.entry.nodeid and again.entry.attr.size == 0
    s.ok("host.mkdir", b"d", 0o755)
    assert s.err("CREATE", 0, 1, b"d", O_RDWR, 0o644) == {Errno.EISDIR}
    assert s.err("CREATE", 0, 1, b"m", 3, 0o644) == {Errno.EINVAL}


def test_setattr_size_mode_and_time(spec) -> None:
    s = spec()
    s.file(b"f", b"abcdef")
    node = s.lookup(0, b"f")
    attr = s.ok("SETATTR", 0, node, 2, None, None)
    assert attr.size == 2 and s.ok("host.read", b"f", 0, 9) == b"ab"
    attr = s.ok("SETATTR", 0, node, 4, 0o600, 1_700_000_000_000_000_000)
    assert (attr.size, attr.mode) == (4, 0o600)
    assert attr.mtime.ns == 1_700_000_000_000_000_000
    assert s.ok("host.read", b"f", 0, 9) == b"ab\0\0"  # truncate then extend: zeros
    s.ok("host.write", b"f", 0, b"z")
    assert s.ok("GETATTR", 0, node).mtime.ns is None  # the clock decides again
    assert s.err("SETATTR", 0, node, -1, None, None) == {Errno.EINVAL}
    assert s.err("SETATTR", 0, 1, 0, None, None) == {Errno.EISDIR}
    state = s.state
    s.ok("SETATTR", 0, node, None, None, None)
    assert s.state == state


def test_an_unlinked_but_open_file_keeps_its_data(spec) -> None:
    s = spec()
    s.file(b"f", b"keep")
    fh = s.open(0, b"f")
    s.ok("host.unlink", b"f")
    assert s.ok("READ", 0, fh, 0, 9) == b"keep"  # LIFETIME
    s.ok("WRITE", 0, fh, 4, b"!")
    assert s.ok("READ", 0, fh, 0, 9) == b"keep!"
    s.ok("RELEASE", 0, fh)
    assert 2 in s.state.inodes  # the nodeid still holds it
    s.ok("FORGET", 0, 2, 1)
    assert 2 not in s.state.inodes


READ_ONLY_WRITES = [
    ("WRITE", lambda s: (0, s.open(0, b"f", O_RDONLY), 0, b"x"), {Errno.EBADF, Errno.EROFS}),
    ("SETUPMAPPING", lambda s: (0, s.open(0, b"f", O_RDONLY), 0, 32, True, 0),
     {Errno.EROFS, Errno.EACCES}),
    ("OPEN", lambda s: (0, s.lookup(0, b"f"), O_RDWR), {Errno.EROFS}),
    ("OPEN", lambda s: (0, s.lookup(0, b"f"), O_RDONLY | O_TRUNC), {Errno.EROFS}),
    ("CREATE", lambda s: (0, 1, b"n", O_RDWR, 0o644), {Errno.EROFS}),
    ("MKDIR", lambda s: (0, 1, b"n", 0o755), {Errno.EROFS}),
    ("SYMLINK", lambda s: (0, 1, b"n", b"t"), {Errno.EROFS}),
    ("UNLINK", lambda s: (0, 1, b"f"), {Errno.EROFS}),
    ("RMDIR", lambda s: (0, 1, b"d"), {Errno.EROFS}),
    ("RENAME", lambda s: (0, 1, b"f", 1, b"g", 0), {Errno.EROFS}),
    ("SETATTR", lambda s: (0, s.lookup(0, b"f"), 0, None, None), {Errno.EROFS}),
    ("SETATTR", lambda s: (0, s.lookup(0, b"f"), None, 0o600, None), {Errno.EROFS}),
    ("SETATTR", lambda s: (0, s.lookup(0, b"f"), None, None, 5), {Errno.EROFS}),
]


@pytest.mark.parametrize("name,make_args,errnos", READ_ONLY_WRITES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(READ_ONLY_WRITES)])
def test_read_only_export_refuses_every_write_path(spec, name, make_args, errnos) -> None:
    s = spec(replace(SMALL, read_only=True))
    s.file(b"f", b"ro")
    s.ok("host.mkdir", b"d", 0o755)
    assert s.err(name, *make_args(s)) == errnos  # RO-EXPORT


def test_read_only_export_still_sees_host_changes(spec) -> None:
    s = spec(replace(SMALL, read_only=True))
    s.file(b"f", bytes(20))
    fh = s.mapped(0, b"f", writable=False, flags=O_RDONLY)
    s.ok("host.write", b"f", 0, b"new")
    assert s.ok("LOAD", 0, 0, 3) == b"new"
    assert s.ok("READ", 0, fh, 0, 3) == b"new"


def test_files_cannot_grow_past_the_largest_size(spec) -> None:
    s = spec(replace(SMALL, max_size=64))
    s.file(b"f", b"x")
    fh = s.open(0, b"f")
    node = s.lookup(0, b"f")
    assert s.err("WRITE", 0, fh, 63, b"ab") == {Errno.EFBIG}
    assert s.ok("WRITE", 0, fh, 62, b"ab") == 2
    assert s.err("SETATTR", 0, node, 65, None, None) == {Errno.EFBIG}
    assert s.err("host.write", b"f", 64, b"z") == {Errno.EFBIG}
    assert s.err("host.truncate", b"f", 65) == {Errno.EFBIG}
    s.ok("host.truncate", b"f", 64)


def test_create_of_dot_names(spec) -> None:
    s = spec()
    assert s.err("CREATE", 0, 1, b".", O_RDWR, 0o644) == {Errno.EISDIR, Errno.EEXIST,
                                                         Errno.EINVAL}


def test_a_symlinks_mode_or_time_may_be_unsupported(spec) -> None:
    s = spec()
    s.ok("host.symlink", b"target", b"l")
    link = s.lookup(0, b"l")
    results = s.results("SETATTR", 0, link, None, 0o600, None)
    assert Err(Errno.EOPNOTSUPP) in results and any(isinstance(r, Ok) for r in results)
    assert s.err("SETATTR", 0, link, 0, None, None) == {Errno.EINVAL}
    assert s.err("host.chmod", b"l", 0o600) == {Errno.ELOOP, Errno.EOPNOTSUPP}
