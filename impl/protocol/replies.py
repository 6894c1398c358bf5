"""Reply bodies: what follows fuse_out_header on success, one dataclass per fuse.h layout.

Same shape as requests.py: `encode() -> bytes`, `decode(body) -> cls` with every length and
judgeable field checked (decode_reply turns the errno into EPROTO: a bad reply is the server's
fault, not the caller's).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from struct import Struct
from typing import Self

from . import constants as c
from ._wire import U32, Buffer, FixedLayout, expect_at_least, expect_size, nanoseconds, pack
from .errors import ProtocolError

_INIT_OUT = Struct("<IIIIHHIIHHIIH22x")
_INIT_OUT_COMPAT_22 = Struct("<IIIIHHI")  # minor < 23
_INIT_OUT_COMPAT = Struct("<II")  # minor < 5
# fuse_entry_out and fuse_attr_out up to their fuse_attr (codec packs whole replies with them)
ENTRY_OUT = Struct("<QQQQII")
ATTR_OUT = Struct("<QI4x")
_OPEN_OUT = Struct("<QIi")
_DIRENT = Struct("<QQII")
_DT_MAX = 0xF  # a DT_* value is (st_mode & S_IFMT) >> 12


@dataclass(frozen=True, slots=True)
class Attr(FixedLayout):
    """fuse_attr: times are seconds plus nanoseconds (below 10**9)."""

    LAYOUT = Struct("<QQQQQQIIIIIIIIII")
    NSEC_FIELDS = ("atimensec", "mtimensec", "ctimensec")

    ino: int
    size: int
    blocks: int
    atime: int
    mtime: int
    ctime: int
    atimensec: int
    mtimensec: int
    ctimensec: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    blksize: int
    flags: int = 0

    def to_stat(self) -> os.stat_result:
        """As the `os` module's stat result (st_dev is 0: the guest's device is its own)."""
        times = (self.atime, self.mtime, self.ctime)
        nanos = [t * 10**9 + n for t, n in zip(times, (self.atimensec, self.mtimensec,
                                                         self.ctimensec), strict=True)]
        return os.stat_result((
            self.mode, self.ino, 0, self.nlink, self.uid, self.gid, self.size, *times,
            *(n / 1e9 for n in nanos), *nanos, self.blksize, self.blocks, self.rdev,
        ))


@dataclass(frozen=True, slots=True)
class InitOut:
    """fuse_init_out. `flags` holds all 64 capability bits: flags | flags2 << 32."""

    major: int
    minor: int
    max_readahead: int = 0
    flags: int = 0
    max_background: int = 0
    congestion_threshold: int = 0
    max_write: int = 0
    time_gran: int = 0
    max_pages: int = 0
    map_alignment: int = 0
    max_stack_depth: int = 0
    request_timeout: int = 0

    def encode(self) -> bytes:
        return pack(
            _INIT_OUT, self.major, self.minor, self.max_readahead, self.flags & U32,
            self.max_background, self.congestion_threshold, self.max_write, self.time_gran,
            self.max_pages, self.map_alignment, self.flags >> 32, self.max_stack_depth,
            self.request_timeout,
        )  # fmt: skip

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        # Servers answer older clients with the shorter layouts of their minor version.
        if len(body) == _INIT_OUT_COMPAT.size:
            return cls(*_INIT_OUT_COMPAT.unpack(body))
        if len(body) == _INIT_OUT_COMPAT_22.size:
            return cls(*_INIT_OUT_COMPAT_22.unpack(body))
        expect_size(body, _INIT_OUT.size, "fuse_init_out")
        f = _INIT_OUT.unpack(body)
        return cls(f[0], f[1], f[2], f[3] | f[10] << 32, f[4], f[5], f[6], f[7], f[8], f[9],
                   f[11], f[12])


@dataclass(frozen=True, slots=True)
class EntryOut:
    """fuse_entry_out: the nodeid a name resolved to, with cache timeouts and attributes."""

    nodeid: int
    generation: int
    attr: Attr
    entry_valid: int = 0
    attr_valid: int = 0
    entry_valid_nsec: int = 0
    attr_valid_nsec: int = 0

    def encode(self) -> bytes:
        head = pack(
            ENTRY_OUT, self.nodeid, self.generation, self.entry_valid, self.attr_valid,
            self.entry_valid_nsec, self.attr_valid_nsec,
        )  # fmt: skip
        return head + self.attr.encode()

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        expect_size(body, ENTRY_OUT.size + Attr.LAYOUT.size, "fuse_entry_out")
        nodeid, generation, entry_valid, attr_valid, entry_nsec, attr_nsec = (
            ENTRY_OUT.unpack_from(body)
        )
        nanoseconds(entry_nsec, "entry_valid_nsec")
        nanoseconds(attr_nsec, "attr_valid_nsec")
        attr = Attr.decode(body[ENTRY_OUT.size :])
        return cls(nodeid, generation, attr, entry_valid, attr_valid, entry_nsec, attr_nsec)


@dataclass(frozen=True, slots=True)
class AttrOut:
    attr: Attr
    attr_valid: int = 0
    attr_valid_nsec: int = 0

    def encode(self) -> bytes:
        return pack(ATTR_OUT, self.attr_valid, self.attr_valid_nsec) + self.attr.encode()

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        expect_size(body, ATTR_OUT.size + Attr.LAYOUT.size, "fuse_attr_out")
        attr_valid, attr_nsec = ATTR_OUT.unpack_from(body)
        attr = Attr.decode(body[ATTR_OUT.size :])
        return cls(attr, attr_valid, nanoseconds(attr_nsec, "attr_valid_nsec"))


@dataclass(frozen=True, slots=True)
class OpenOut(FixedLayout):
    """fuse_open_out (OPEN, OPENDIR): the handle and FOPEN_* flags; with FOPEN_PASSTHROUGH,
    `backing_id` names the backing file a FUSE server registered with the kernel (7.40)."""

    LAYOUT = _OPEN_OUT

    fh: int
    open_flags: int = 0
    backing_id: int = 0


@dataclass(frozen=True, slots=True)
class CreateOut:
    """CREATE's reply: fuse_entry_out then fuse_open_out."""

    entry: EntryOut
    open: OpenOut

    def encode(self) -> bytes:
        return self.entry.encode() + self.open.encode()

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        expect_size(body, ENTRY_OUT.size + Attr.LAYOUT.size + _OPEN_OUT.size, "create reply")
        split = ENTRY_OUT.size + Attr.LAYOUT.size
        return cls(EntryOut.decode(body[:split]), OpenOut.decode(body[split:]))


@dataclass(frozen=True, slots=True)
class WriteOut(FixedLayout):
    LAYOUT = Struct("<I4x")

    size: int


@dataclass(frozen=True, slots=True)
class StatfsOut(FixedLayout):
    """fuse_statfs_out (struct fuse_kstatfs)."""

    LAYOUT = Struct("<QQQQQIII28x")

    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    bsize: int
    namelen: int
    frsize: int


@dataclass(frozen=True, slots=True)
class Data:
    """Raw bytes: READ's data, READLINK's target (no NUL)."""

    data: bytes

    def encode(self) -> bytes:
        return self.data

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        return cls(bytes(body))


@dataclass(frozen=True, slots=True)
class Dirent:
    """fuse_dirent: `off` is the cookie a READDIR continues from to get the next entry."""

    ino: int
    off: int
    type: int
    name: bytes


def dirent_size(name_length: int) -> int:
    """FUSE_DIRENT_SIZE: header plus name, rounded up to 8 bytes."""
    return (_DIRENT.size + name_length + 7) & ~7


@dataclass(frozen=True, slots=True)
class Dirents:
    """READDIR's reply: fuse_dirent records, each padded to an 8-byte boundary."""

    entries: tuple[Dirent, ...]

    def encode(self) -> bytes:
        parts = []
        for d in self.entries:
            _check_dirent_name(d.name)
            if not 0 <= d.type <= _DT_MAX:
                raise ProtocolError(errno.EINVAL, f"dirent type {d.type} is not a DT_* value")
            record = pack(_DIRENT, d.ino, d.off, len(d.name), d.type) + d.name
            parts.append(record.ljust(dirent_size(len(d.name)), b"\0"))
        return b"".join(parts)

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        entries = []
        pos = 0
        while pos < len(body):
            expect_at_least(body[pos:], _DIRENT.size, "fuse_dirent")
            ino, off, namelen, dtype = _DIRENT.unpack_from(body, pos)
            if not 0 < namelen <= c.FUSE_NAME_MAX:
                raise ProtocolError(errno.EINVAL, f"dirent name length {namelen}")
            size = dirent_size(namelen)
            expect_at_least(body[pos:], size, "fuse_dirent record")
            name = bytes(body[pos + _DIRENT.size : pos + _DIRENT.size + namelen])
            _check_dirent_name(name)
            if dtype > _DT_MAX:
                raise ProtocolError(errno.EINVAL, f"dirent type {dtype} is not a DT_* value")
            entries.append(Dirent(ino, off, dtype, name))
            pos += size
        return cls(tuple(entries))


def _check_dirent_name(name: bytes) -> None:
    # The guest kernel refuses these too (fs/fuse/readdir.c): an entry is one path component.
    if not 0 < len(name) <= c.FUSE_NAME_MAX or b"/" in name or b"\0" in name:
        raise ProtocolError(errno.EINVAL, f"bad directory entry name {name[:64]!r}")
