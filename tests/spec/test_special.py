"""The spec's LINK, MKNOD, xattr, FALLOCATE and SYNCFS rules, errno by errno."""

from __future__ import annotations

from dataclasses import replace

from pagefs.spec import Errno, initial_state
from pagefs.spec.datatypes import FileKind
from pagefs.spec.explore import SMALL

FIFO, SOCK, CHR, BLK, DIR, REG = 0o010644, 0o140644, 0o020666, 0o060666, 0o040755, 0o100600
STALE = {Errno.ESTALE, Errno.ENOENT}


def read_only(s) -> None:
    s.state = replace(s.state, config=replace(s.state.config, read_only=True))


def test_link_names_the_same_inode_twice(spec) -> None:
    s = spec()
    s.file(b"f", b"abc")
    f = s.lookup(0, b"f")
    entry = s.ok("LINK", 0, f, 1, b"g")
    assert entry.nodeid == f and entry.attr.nlink == 2
    assert s.state.guests[0].nodes[f].nlookup == 2
    s.ok("host.unlink", b"f")
    assert s.ok("GETATTR", 0, s.lookup(0, b"g")).nlink == 1


def test_link_errnos(spec) -> None:
    s = spec()
    s.file(b"f")
    s.ok("MKDIR", 0, 1, b"d", 0o755)
    f, d = s.lookup(0, b"f"), s.lookup(0, b"d")
    assert s.err("LINK", 0, d, 1, b"x") == {Errno.EPERM}
    assert s.err("LINK", 0, f, 1, b"d") == {Errno.EEXIST}
    assert s.err("LINK", 0, 99, 1, b"x") == STALE
    assert s.err("LINK", 0, 99, 1, b"a/b") == STALE | {Errno.EINVAL}
    assert s.err("LINK", 0, f, 99, b"x") == STALE
    assert s.err("LINK", 0, f, f, b"x") == {Errno.ENOTDIR}
    assert s.err("LINK", 0, f, 1, b"..") == {Errno.EEXIST, Errno.EINVAL}
    s.ok("host.unlink", b"f")
    assert s.err("LINK", 0, f, 1, b"back") == {Errno.ENOENT}
    read_only(s)
    assert s.err("LINK", 0, f, 1, b"x") == {Errno.EROFS, Errno.ENOENT}  # f has no name
    assert s.err("LINK", 0, d, 1, b"d") == {Errno.EROFS, Errno.EPERM, Errno.EEXIST}
    assert s.err("LINK", 0, 99, 1, b"x") == {Errno.EROFS} | STALE


def test_mknod_kinds(spec) -> None:
    s = spec()
    assert s.ok("MKNOD", 0, 1, b"p", FIFO).attr.kind is FileKind.FIFO
    assert s.ok("MKNOD", 0, 1, b"s", SOCK).attr.kind is FileKind.SOCK
    assert s.ok("MKNOD", 0, 1, b"r", REG).attr.kind is FileKind.REG
    assert s.ok("MKNOD", 0, 1, b"z", 0o644).attr.kind is FileKind.REG
    sock = s.lookup(0, b"s")
    assert Errno.ENXIO in s.err("OPEN", 0, sock, 0)  # never opened by the host
    for mode in (CHR, BLK):
        assert s.err("MKNOD", 0, 1, b"dev", mode) == {Errno.EPERM}
    assert s.err("MKNOD", 0, 1, b"dir", DIR) == {Errno.EINVAL}
    assert s.err("MKNOD", 0, 1, b"p", CHR) == {Errno.EEXIST, Errno.EPERM}
    read_only(s)
    assert s.err("MKNOD", 0, 1, b"q", FIFO) == {Errno.EROFS}
    assert s.err("MKNOD", 0, 1, b"p", CHR) == {Errno.EROFS, Errno.EEXIST, Errno.EPERM}


def test_user_xattrs(spec) -> None:
    s = spec()
    s.file(b"f")
    f = s.lookup(0, b"f")
    s.ok("SETXATTR", 0, f, b"user.a", b"12345", 0)
    assert s.ok("GETXATTR", 0, f, b"user.a", 0) == 5
    assert s.ok("GETXATTR", 0, f, b"user.a", 5) == b"12345"
    assert s.err("GETXATTR", 0, f, b"user.a", 4) == {Errno.ERANGE}
    assert s.err("SETXATTR", 0, f, b"user.a", b"x", 1) == {Errno.EEXIST}
    assert s.err("SETXATTR", 0, f, b"user.b", b"x", 2) == {Errno.ENODATA}
    s.ok("SETXATTR", 0, f, b"user.b", b"", 1)
    assert s.ok("LISTXATTR", 0, f, 0) == len(b"user.a\0user.b\0")
    assert s.ok("LISTXATTR", 0, f, 100) == (b"user.a", b"user.b")
    assert s.err("LISTXATTR", 0, f, 10) == {Errno.ERANGE}
    s.ok("REMOVEXATTR", 0, f, b"user.a")
    assert s.err("REMOVEXATTR", 0, f, b"user.a") == {Errno.ENODATA}
    assert s.err("GETXATTR", 0, f, b"user.a", 0) == {Errno.ENODATA}
    assert s.ok("GETXATTR", 1, s.lookup(1, b"f"), b"user.b", 0) == 0  # every guest sees it


def test_xattr_errnos(spec) -> None:
    s = spec()
    s.file(b"f")
    s.ok("MKNOD", 0, 1, b"p", FIFO)
    f, p = s.lookup(0, b"f"), s.lookup(0, b"p")
    for name in (b"trusted.a", b"security.capability", b"system.posix_acl_access", b"user."):
        assert s.err("SETXATTR", 0, f, name, b"v", 0) == {Errno.EPERM}
        assert s.err("REMOVEXATTR", 0, f, name) == {Errno.EPERM}
        assert s.err("GETXATTR", 0, f, name, 0) == {Errno.ENODATA}
    assert s.err("SETXATTR", 0, p, b"user.a", b"v", 0) == {Errno.EPERM}
    assert s.err("GETXATTR", 0, p, b"user.a", 0) == {Errno.ENODATA}
    assert s.err("SETXATTR", 0, f, b"", b"v", 0) == {Errno.ERANGE, Errno.EPERM}
    assert s.err("GETXATTR", 0, f, b"user." + b"n" * 251, 0) == {Errno.ERANGE}
    assert s.err("SETXATTR", 0, f, b"user.a", b"v", 3) == {Errno.EINVAL}
    assert s.err("SETXATTR", 0, f, b"user.a", bytes(65537), 0) == {Errno.E2BIG}
    assert s.err("SETXATTR", 0, 99, b"user.a", b"v", 0) == STALE
    read_only(s)
    assert s.err("SETXATTR", 0, f, b"user.a", b"v", 0) == {Errno.EROFS}
    assert s.err("SETXATTR", 0, f, b"trusted.a", b"v", 3) == {Errno.EROFS, Errno.EPERM,
                                                              Errno.EINVAL}
    assert s.err("REMOVEXATTR", 0, f, b"user.a") == {Errno.EROFS}
    assert s.ok("LISTXATTR", 0, f, 0) == 0  # reading is served


def test_fallocate_modes(spec) -> None:
    s = spec()
    s.file(b"f", b"abcdefgh")
    fh = s.open(0, b"f")
    f = s.lookup(0, b"f")
    s.ok("FALLOCATE", 0, fh, 2, 3, 0x03)  # punch hole, keep size
    assert s.ok("READ", 0, fh, 0, 20) == b"ab\0\0\0fgh"
    s.ok("FALLOCATE", 0, fh, 6, 4, 0x10)  # zero range, grows
    assert s.ok("READ", 0, fh, 0, 20) == b"ab\0\0\0f\0\0\0\0"
    s.ok("FALLOCATE", 0, fh, 0, 16, 0x01)  # keep size: nothing seen
    assert s.ok("GETATTR", 0, f).size == 10
    s.ok("FALLOCATE", 0, fh, 0, 12, 0)
    assert s.ok("GETATTR", 0, f).size == 12


def test_fallocate_errnos(spec) -> None:
    s = spec()
    s.file(b"f", b"abc")
    reader = s.open(0, b"f", 0)
    writer = s.open(0, b"f", 2)
    assert s.err("FALLOCATE", 0, reader, 0, 4, 0) == {Errno.EBADF}
    assert s.err("FALLOCATE", 0, reader, 0, 4, 0x02) == {Errno.EBADF, Errno.EOPNOTSUPP}
    assert s.err("FALLOCATE", 0, 99, 0, 4, 0) == {Errno.EBADF}
    assert s.err("FALLOCATE", 0, writer, 0, 4, 0x02) == {Errno.EOPNOTSUPP}
    assert s.err("FALLOCATE", 0, writer, 0, 4, 0x08) == {Errno.EOPNOTSUPP}
    assert s.err("FALLOCATE", 0, writer, 0, 0, 0) == {Errno.EINVAL}
    assert s.err("FALLOCATE", 0, writer, -1, 4, 0) == {Errno.EINVAL}
    assert s.err("FALLOCATE", 0, writer, s.state.config.max_size, 1, 0) == {Errno.EFBIG}
    s.state = initial_state(replace(SMALL, read_only=True))
    s.file(b"f", b"abc")
    reader = s.open(0, b"f", 0)  # a read-only export has only read-only handles
    for mode in (0, 0x03, 0x10):
        assert s.err("FALLOCATE", 0, reader, 0, 4, mode) == {Errno.EBADF, Errno.EROFS}
    assert s.err("FALLOCATE", 0, reader, 0, 4, 0x08) == {Errno.EBADF, Errno.EROFS,
                                                         Errno.EOPNOTSUPP}


def test_syncfs_makes_everything_durable_even_read_only(spec) -> None:
    s = spec()
    s.file(b"f", b"abc")
    assert any(i.dirty for i in s.state.inodes.values())
    s.ok("SYNCFS", 0, 1)
    assert not any(i.dirty for i in s.state.inodes.values())
    assert s.err("SYNCFS", 0, 99) == STALE
    s.state = initial_state(replace(SMALL, read_only=True))
    s.ok("SYNCFS", 0, 1)
