"""Request bodies: what follows fuse_in_header, one dataclass per fuse.h layout.

Each class has `encode() -> bytes` and `decode(body) -> cls`; `decode` is given exactly the
bytes after the header and checks every length and every field it can judge on its own.
Padding and reserved fields are written as zero and not judged on input, as the kernel and
libfuse do, so that a field later given a meaning does not break older peers.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from struct import Struct
from typing import Self

from . import constants as c
from ._wire import (
    U32,
    Buffer,
    FixedLayout,
    cstring,
    cstrings,
    expect_at_least,
    expect_size,
    known_bits,
    pack,
)
from .errors import ProtocolError

_INIT_IN = Struct("<IIIII44x")
_INIT_IN_COMPAT = Struct("<IIII")  # before 7.36: no flags2
_U64 = Struct("<Q")
_BATCH_FORGET_IN = Struct("<I4x")  # count, dummy
_FORGET_ONE = Struct("<QQ")
_MKDIR_IN = Struct("<II")
_RENAME2_IN = Struct("<QI4x")
CREATE_IN = Struct("<IIII")
_RW_IN = Struct("<QQIIQI4x")  # fuse_read_in; fuse_write_in has the same layout
_REMOVEMAPPING_IN = Struct("<I")
_REMOVEMAPPING_ONE = Struct("<QQ")

_OPEN_FLAGS = c.FUSE_OPEN_KILL_SUIDGID
_WRITE_FLAGS = c.FUSE_WRITE_CACHE | c.FUSE_WRITE_LOCKOWNER | c.FUSE_WRITE_KILL_SUIDGID
_RENAME_FLAGS = c.RENAME_NOREPLACE | c.RENAME_EXCHANGE | c.RENAME_WHITEOUT


@dataclass(frozen=True, slots=True)
class Empty:
    """No body (READLINK, STATFS, DESTROY requests; replies that carry only a header)."""

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        expect_size(body, 0, "empty body")
        return cls()


EMPTY = Empty()


@dataclass(frozen=True, slots=True)
class InitIn:
    """fuse_init_in. `flags` holds all 64 capability bits: flags | flags2 << 32."""

    major: int
    minor: int
    max_readahead: int = 0
    flags: int = 0

    def encode(self) -> bytes:
        return pack(
            _INIT_IN, self.major, self.minor, self.max_readahead, self.flags & U32, self.flags >> 32
        )

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        if len(body) == _INIT_IN_COMPAT.size:
            return cls(*_INIT_IN_COMPAT.unpack(body))
        expect_size(body, _INIT_IN.size, "fuse_init_in")
        major, minor, readahead, flags, flags2 = _INIT_IN.unpack(body)
        return cls(major, minor, readahead, flags | flags2 << 32)


@dataclass(frozen=True, slots=True)
class Name:
    """One NUL-terminated name (LOOKUP, UNLINK, RMDIR)."""

    name: bytes

    def encode(self) -> bytes:
        return cstring(self.name, "name")

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        return cls(*cstrings(body, 1, "name"))


@dataclass(frozen=True, slots=True)
class ForgetIn(FixedLayout):
    LAYOUT = _U64

    nlookup: int


@dataclass(frozen=True, slots=True)
class ForgetOne:
    nodeid: int
    nlookup: int


@dataclass(frozen=True, slots=True)
class BatchForgetIn:
    """fuse_batch_forget_in followed by `count` fuse_forget_one."""

    entries: tuple[ForgetOne, ...]

    def encode(self) -> bytes:
        rows = [(e.nodeid, e.nlookup) for e in self.entries]
        return _pack_counted(_BATCH_FORGET_IN, _FORGET_ONE, rows)

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        rows = _unpack_counted(body, _BATCH_FORGET_IN, _FORGET_ONE, "batch forget")
        return cls(tuple(ForgetOne(n, k) for n, k in rows))


@dataclass(frozen=True, slots=True)
class GetattrIn(FixedLayout):
    LAYOUT = Struct("<I4xQ")
    KNOWN_BITS = {"getattr_flags": c.FUSE_GETATTR_FH}

    getattr_flags: int = 0
    fh: int = 0


@dataclass(frozen=True, slots=True)
class SetattrIn(FixedLayout):
    """fuse_setattr_in; `valid` (SetattrValid bits) says which other fields count."""

    LAYOUT = Struct("<I4xQQQQQQIIII4xII4x")
    KNOWN_BITS = {"valid": (c.SetattrValid.KILL_SUIDGID << 1) - 1}
    NSEC_FIELDS = ("atimensec", "mtimensec", "ctimensec")

    valid: int
    fh: int = 0
    size: int = 0
    lock_owner: int = 0
    atime: int = 0
    mtime: int = 0
    ctime: int = 0
    atimensec: int = 0
    mtimensec: int = 0
    ctimensec: int = 0
    mode: int = 0
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True)
class SymlinkIn:
    """Two NUL-terminated strings: the new entry's name, then the link target."""

    name: bytes
    target: bytes

    def encode(self) -> bytes:
        return cstring(self.name, "name") + cstring(self.target, "symlink target")

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        return cls(*cstrings(body, 2, "symlink"))


@dataclass(frozen=True, slots=True)
class MkdirIn:
    mode: int
    name: bytes
    umask: int = 0

    def encode(self) -> bytes:
        return pack(_MKDIR_IN, self.mode, self.umask) + cstring(self.name, "name")

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        (mode, umask), (name,) = _head_and_names(body, _MKDIR_IN, 1, "fuse_mkdir_in")
        return cls(mode, name, umask)


@dataclass(frozen=True, slots=True)
class RenameIn:
    """fuse_rename_in, then the old and the new name."""

    newdir: int
    oldname: bytes
    newname: bytes

    def encode(self) -> bytes:
        names = cstring(self.oldname, "old name") + cstring(self.newname, "new name")
        return pack(_U64, self.newdir) + names

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        (newdir,), names = _head_and_names(body, _U64, 2, "fuse_rename_in")
        return cls(newdir, *names)


@dataclass(frozen=True, slots=True)
class Rename2In:
    """fuse_rename2_in (renameat2 flags), then the old and the new name."""

    newdir: int
    oldname: bytes
    newname: bytes
    flags: int = 0

    def encode(self) -> bytes:
        names = cstring(self.oldname, "old name") + cstring(self.newname, "new name")
        return pack(_RENAME2_IN, self.newdir, self.flags) + names

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        (newdir, flags), (old, new) = _head_and_names(body, _RENAME2_IN, 2, "fuse_rename2_in")
        known_bits(flags, _RENAME_FLAGS, "rename flags")
        return cls(newdir, old, new, flags)


@dataclass(frozen=True, slots=True)
class OpenIn(FixedLayout):
    """fuse_open_in (OPEN and OPENDIR): `flags` are the open(2) flags."""

    LAYOUT = Struct("<II")
    KNOWN_BITS = {"open_flags": _OPEN_FLAGS}

    flags: int
    open_flags: int = 0


@dataclass(frozen=True, slots=True)
class CreateIn:
    """fuse_create_in, then the new file's name."""

    flags: int
    mode: int
    name: bytes
    umask: int = 0
    open_flags: int = 0

    def encode(self) -> bytes:
        head = pack(CREATE_IN, self.flags, self.mode, self.umask, self.open_flags)
        return head + cstring(self.name, "name")

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        head, (name,) = _head_and_names(body, CREATE_IN, 1, "fuse_create_in")
        flags, mode, umask, open_flags = head
        known_bits(open_flags, _OPEN_FLAGS, "open_flags")
        return cls(flags, mode, name, umask, open_flags)


@dataclass(frozen=True, slots=True)
class ReadIn(FixedLayout):
    """fuse_read_in (READ and READDIR)."""

    LAYOUT = _RW_IN
    KNOWN_BITS = {"read_flags": c.FUSE_READ_LOCKOWNER}

    fh: int
    offset: int
    size: int
    read_flags: int = 0
    lock_owner: int = 0
    flags: int = 0


@dataclass(frozen=True, slots=True)
class WriteIn:
    """fuse_write_in followed by exactly `size` bytes of data."""

    fh: int
    offset: int
    data: bytes
    write_flags: int = 0
    lock_owner: int = 0
    flags: int = 0

    def encode(self) -> bytes:
        head = pack(
            _RW_IN, self.fh, self.offset, len(self.data), self.write_flags,
            self.lock_owner, self.flags,
        )  # fmt: skip
        return head + self.data

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        expect_at_least(body, _RW_IN.size, "fuse_write_in")
        fh, offset, size, write_flags, owner, flags = _RW_IN.unpack_from(body)
        known_bits(write_flags, _WRITE_FLAGS, "write_flags")
        expect_size(body, _RW_IN.size + size, "write")
        return cls(fh, offset, bytes(body[_RW_IN.size :]), write_flags, owner, flags)


@dataclass(frozen=True, slots=True)
class ReleaseIn(FixedLayout):
    """fuse_release_in (RELEASE and RELEASEDIR)."""

    LAYOUT = Struct("<QIIQ")
    KNOWN_BITS = {"release_flags": c.FUSE_RELEASE_FLUSH | c.FUSE_RELEASE_FLOCK_UNLOCK}

    fh: int
    flags: int = 0
    release_flags: int = 0
    lock_owner: int = 0


@dataclass(frozen=True, slots=True)
class FlushIn(FixedLayout):
    LAYOUT = Struct("<Q8xQ")

    fh: int
    lock_owner: int = 0


@dataclass(frozen=True, slots=True)
class FsyncIn(FixedLayout):
    LAYOUT = Struct("<QI4x")
    KNOWN_BITS = {"fsync_flags": c.FUSE_FSYNC_FDATASYNC}

    fh: int
    fsync_flags: int = 0


@dataclass(frozen=True, slots=True)
class InterruptIn(FixedLayout):
    LAYOUT = _U64

    unique: int


@dataclass(frozen=True, slots=True)
class SetupmappingIn(FixedLayout):
    """fuse_setupmapping_in: map `length` bytes of the file at `foffset` to window `moffset`."""

    LAYOUT = Struct("<QQQQQ")
    KNOWN_BITS = {"flags": c.FUSE_SETUPMAPPING_FLAG_READ | c.FUSE_SETUPMAPPING_FLAG_WRITE}

    fh: int
    foffset: int
    length: int
    flags: int
    moffset: int

    @property
    def writable(self) -> bool:
        return bool(self.flags & c.FUSE_SETUPMAPPING_FLAG_WRITE)


@dataclass(frozen=True, slots=True)
class RemovemappingOne:
    moffset: int
    length: int


@dataclass(frozen=True, slots=True)
class RemovemappingIn:
    """fuse_removemapping_in, then 1..FUSE_REMOVEMAPPING_MAX_ENTRY fuse_removemapping_one."""

    entries: tuple[RemovemappingOne, ...]

    def encode(self) -> bytes:
        rows = [(e.moffset, e.length) for e in self.entries]
        return _pack_counted(_REMOVEMAPPING_IN, _REMOVEMAPPING_ONE, rows)

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        rows = _unpack_counted(
            body, _REMOVEMAPPING_IN, _REMOVEMAPPING_ONE, "removemapping",
            limit=c.FUSE_REMOVEMAPPING_MAX_ENTRY,
        )  # fmt: skip
        return cls(tuple(RemovemappingOne(m, n) for m, n in rows))


def _head_and_names(
    body: Buffer, head: Struct, count: int, what: str
) -> tuple[tuple[int, ...], tuple[bytes, ...]]:
    """A fixed struct, then exactly `count` NUL-terminated strings."""
    expect_at_least(body, head.size, what)
    return head.unpack_from(body), cstrings(body[head.size :], count, f"{what} names")


def _pack_counted(head: Struct, record: Struct, rows: Sequence[tuple[int, ...]]) -> bytes:
    """A count (the head's first field; the rest is padding), then that many records."""
    return pack(head, len(rows)) + b"".join(pack(record, *row) for row in rows)


def _unpack_counted(
    body: Buffer, head: Struct, record: Struct, what: str, *, limit: int | None = None
) -> list[tuple[int, ...]]:
    """The records of a body written by _pack_counted; with `limit`, 1..limit of them."""
    expect_at_least(body, head.size, f"{what} head")
    (count,) = head.unpack_from(body)
    if limit is not None and not 1 <= count <= limit:
        raise ProtocolError(errno.EINVAL, f"{what}: {count} entries, allowed 1..{limit}")
    expect_size(body, head.size + count * record.size, what)
    return list(record.iter_unpack(body[head.size :]))
