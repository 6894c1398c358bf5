"""Bodies of the requests guest programs meet beyond the core set (layouts per Linux
include/uapi/linux/fuse.h): LINK, MKNOD, the four xattr requests, FALLOCATE and SYNCFS,
and GETXATTR/LISTXATTR's size reply. REMOVEXATTR's body is a `Name`.

FUSE_SETXATTR_EXT is never negotiated, so fuse_setxattr_in has its 8-byte form.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from struct import Struct
from typing import Self

from ._wire import Buffer, FixedLayout, cstring, cstrings, expect_at_least, expect_size, pack
from .errors import ProtocolError
from .requests import _head_and_names

_U64 = Struct("<Q")
_MKNOD_IN = Struct("<III4x")
_SETXATTR_IN = Struct("<II")
_GETXATTR_IN = Struct("<I4x")


@dataclass(frozen=True, slots=True)
class LinkIn:
    """fuse_link_in (the inode to link), then the new name in the request's directory."""

    oldnodeid: int
    name: bytes

    def encode(self) -> bytes:
        return pack(_U64, self.oldnodeid) + cstring(self.name, "name")

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        (oldnodeid,), (name,) = _head_and_names(body, _U64, 1, "fuse_link_in")
        return cls(oldnodeid, name)


@dataclass(frozen=True, slots=True)
class MknodIn:
    """fuse_mknod_in, then the new node's name; `rdev` is the kernel's 32-bit dev_t."""

    mode: int
    rdev: int
    name: bytes
    umask: int = 0

    def encode(self) -> bytes:
        return pack(_MKNOD_IN, self.mode, self.rdev, self.umask) + cstring(self.name, "name")

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        (mode, rdev, umask), (name,) = _head_and_names(body, _MKNOD_IN, 1, "fuse_mknod_in")
        return cls(mode, rdev, name, umask)


@dataclass(frozen=True, slots=True)
class SetxattrIn:
    """fuse_setxattr_in (value size, XATTR_CREATE/XATTR_REPLACE flags), the attribute's
    name, then exactly `size` bytes of value (which may hold NULs)."""

    name: bytes
    value: bytes
    flags: int = 0

    def encode(self) -> bytes:
        return pack(_SETXATTR_IN, len(self.value), self.flags) + cstring(self.name, "name") \
            + self.value

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        expect_at_least(body, _SETXATTR_IN.size, "fuse_setxattr_in")
        size, flags = _SETXATTR_IN.unpack_from(body)
        rest = bytes(body[_SETXATTR_IN.size :])
        if size > len(rest):
            raise ProtocolError(errno.EINVAL, f"setxattr: fewer than the {size} value bytes "
                                "announced")
        split = len(rest) - size
        (name,) = cstrings(rest[:split], 1, "setxattr name")
        return cls(name, rest[split:], flags)


@dataclass(frozen=True, slots=True)
class GetxattrIn:
    """fuse_getxattr_in (the room the guest offers; 0 asks for the size), then the name."""

    name: bytes
    size: int = 0

    def encode(self) -> bytes:
        return pack(_GETXATTR_IN, self.size) + cstring(self.name, "name")

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        (size,), (name,) = _head_and_names(body, _GETXATTR_IN, 1, "fuse_getxattr_in")
        return cls(name, size)


@dataclass(frozen=True, slots=True)
class ListxattrIn(FixedLayout):
    """fuse_getxattr_in alone: the room the guest offers for the NUL-separated names."""

    LAYOUT = _GETXATTR_IN

    size: int = 0


@dataclass(frozen=True, slots=True)
class XattrSizeOut(FixedLayout):
    """fuse_getxattr_out: the size a GETXATTR or LISTXATTR with size 0 asked for."""

    LAYOUT = _GETXATTR_IN

    size: int


@dataclass(frozen=True, slots=True)
class FallocateIn(FixedLayout):
    """fuse_fallocate_in: fallocate(2) `mode` (KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE, ...)."""

    LAYOUT = Struct("<QQQI4x")

    fh: int
    offset: int
    length: int
    mode: int = 0


@dataclass(frozen=True, slots=True)
class SyncfsIn:
    """fuse_syncfs_in: 8 bytes of padding."""

    def encode(self) -> bytes:
        return bytes(_U64.size)

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        expect_size(body, _U64.size, "fuse_syncfs_in")
        return cls()
