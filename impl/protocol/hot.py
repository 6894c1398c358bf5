"""The requests a guest sends most, in one struct call each way.

GETATTR, FORGET, OPEN, RELEASE, FLUSH and READ (a fixed body), LOOKUP and UNLINK (a name),
CREATE and WRITE are encoded straight from their fields, header and body in one pack,
with no Request or body dataclass made on the way; their plain successful replies are
decoded in one unpack into the very reply body classes `decode_reply` gives, built
without their frozen __init__ (`frozen_builder`). The layouts are the ones requests.py,
replies.py and codec.py define (joined here, never restated), the bytes are those of
`encode_request`, and a reply is taken only if `decode_reply` would take it as a success.
A reply that is not the plain success of its shape (an error, another length, another
request's, a field decode_reply refuses) gives None: the caller then decodes it with
`decode_reply`, so errors and malformed replies are judged in one place.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from struct import Struct

from . import replies as rp
from . import requests as rq
from ._wire import NSEC_PER_SEC, Buffer, FixedLayout, cstring, frozen_builder, pack
from .codec import ATTR_REPLY, ENTRY_REPLY, IN_HEADER, OUT_HEADER
from .constants import Opcode
from .replies import ATTR_OUT, ENTRY_OUT

Ids = tuple[int, int, int]  # fuse_in_header uid, gid, pid
HotParser = Callable[[Buffer, int, int], object]


class FixedRequest:
    """A request whose body is one fixed layout: header and body packed together."""

    __slots__ = ("_opcode", "_layout", "_pack", "_size")

    def __init__(self, opcode: Opcode, body: type[FixedLayout]) -> None:
        self._opcode = int(opcode)
        self._layout = Struct(IN_HEADER.format + body.LAYOUT.format[1:])
        self._pack = self._layout.pack
        self._size = self._layout.size

    def encode(self, unique: int, nodeid: int, ids: Ids, *fields: int) -> bytes:
        """`fields` are the body's, in its dataclass's order, all of them."""
        try:
            return self._pack(self._size, self._opcode, unique, nodeid, *ids, 0, *fields)
        except struct.error:  # a field out of range: the checked pack says which
            return pack(self._layout, self._size, self._opcode, unique, nodeid, *ids, 0,
                        *fields)


GETATTR = FixedRequest(Opcode.GETATTR, rq.GetattrIn)
FORGET = FixedRequest(Opcode.FORGET, rq.ForgetIn)
OPEN = FixedRequest(Opcode.OPEN, rq.OpenIn)
RELEASE = FixedRequest(Opcode.RELEASE, rq.ReleaseIn)
FLUSH = FixedRequest(Opcode.FLUSH, rq.FlushIn)
READ = FixedRequest(Opcode.READ, rq.ReadIn)
SETUPMAPPING = FixedRequest(Opcode.SETUPMAPPING, rq.SetupmappingIn)
_WRITE_HEAD = Struct(IN_HEADER.format + rq.ReadIn.LAYOUT.format[1:])  # fuse_write_in's too
_CREATE_HEAD = Struct(IN_HEADER.format + rq.CREATE_IN.format[1:])
_IN_HEADER = IN_HEADER.pack


def encode_name(opcode: Opcode, unique: int, nodeid: int, ids: Ids, name: bytes) -> bytes:
    """A request whose body is one name: LOOKUP, UNLINK, RMDIR."""
    if b"\0" in name:
        cstring(name, "name")  # says why
    try:
        head = _IN_HEADER(IN_HEADER.size + len(name) + 1, opcode, unique, nodeid, *ids, 0)
    except struct.error:
        head = pack(IN_HEADER, IN_HEADER.size + len(name) + 1, opcode, unique, nodeid, *ids, 0)
    return head + name + b"\0"


def encode_create(unique: int, nodeid: int, ids: Ids, flags: int, mode: int, umask: int,
                  name: bytes) -> bytes:
    body = cstring(name, "name")
    size = _CREATE_HEAD.size + len(body)
    return pack(_CREATE_HEAD, size, Opcode.CREATE, unique, nodeid, *ids, 0, flags, mode, umask,
                0) + body


def encode_write(unique: int, nodeid: int, ids: Ids, fh: int, offset: int, data: bytes) -> bytes:
    size = _WRITE_HEAD.size + len(data)
    return pack(_WRITE_HEAD, size, Opcode.WRITE, unique, nodeid, *ids, 0, fh, offset,
                len(data), 0, 0, 0) + data


# ---- replies: each gives the body, or None for anything but the plain success --------
# Each is parse(buffer, length, unique), for the reply in the first `length` bytes of
# `buffer` (the request path's reply buffer, which may be longer), and each checks what
# decode_reply checks: the exact length, error 0, the unique, every nanosecond field
# below a second. Nothing here raises: a reply it cannot take, decode_reply judges.

_ATTR_OUT = frozen_builder(rp.AttrOut)
_ENTRY_OUT = frozen_builder(rp.EntryOut)
_CREATE_OUT = frozen_builder(rp.CreateOut)
_DATA = frozen_builder(rp.Data)
_OPEN = rp.OpenOut.build
_WRITE_OUT = rp.WriteOut.build
if any(cls.KNOWN_BITS or cls.NSEC_FIELDS for cls in (rp.OpenOut, rp.WriteOut)):
    raise TypeError("a field of OpenOut or WriteOut is judged: parse it with from_values")
if rp.Attr.KNOWN_BITS:  # the parsers below check fuse_attr's nanoseconds only
    raise TypeError("a field of Attr has known bits: check them in the hot parsers")


def _count(layout: Struct) -> int:
    return len(layout.unpack(bytes(layout.size)))


_HEAD = _count(OUT_HEADER)  # fields before the body's
_AT = _HEAD + _count(ATTR_OUT)  # where fuse_attr starts in ATTR_REPLY
_ET = _HEAD + _count(ENTRY_OUT)  # ... in ENTRY_REPLY
_ET_END = _ET + len(rp.Attr.__slots__)  # where fuse_open_out starts in CREATE's reply
_ATTR_AT = frozen_builder(rp.Attr, _AT)  # the fuse_attr of an unpacked ATTR_REPLY
_ATTR_ET = frozen_builder(rp.Attr, _ET)  # ... of an unpacked ENTRY_REPLY
_OPEN_ET = frozen_builder(rp.OpenOut, _ET_END)  # the fuse_open_out of CREATE's


def _attr_nsecs(at: int) -> tuple[int, ...]:
    return tuple(at + rp.Attr.__slots__.index(f) for f in rp.Attr.NSEC_FIELDS)


# The nanosecond fields' positions in the unpacked replies, which the parsers below check
# by plain subscripts (an itemgetter and max cost three times as much). ATTR_REPLY:
# header, attr_valid, attr_valid_nsec (4), fuse_attr (its nsecs 11-13). ENTRY_REPLY:
# header, nodeid, generation, entry_valid, attr_valid, entry_valid_nsec (7),
# attr_valid_nsec (8), fuse_attr (15-17). Derived from the layouts here, so a layout
# that moves them stops the import rather than unchecking a field.
if ((_HEAD + 1, *_attr_nsecs(_AT)) != (4, 11, 12, 13)
        or (_HEAD + 4, _HEAD + 5, *_attr_nsecs(_ET)) != (7, 8, 15, 16, 17)):
    raise ImportError("fuse_attr_out or fuse_entry_out moved: update hot.py's positions")
_ATTR_VALUES = ATTR_REPLY.unpack_from
_ENTRY_VALUES = ENTRY_REPLY.unpack_from
_OPEN_REPLY = Struct(OUT_HEADER.format + rp.OpenOut.LAYOUT.format[1:])
_WRITE_REPLY = Struct(OUT_HEADER.format + rp.WriteOut.LAYOUT.format[1:])
_CREATE_REPLY = Struct(ENTRY_REPLY.format + rp.OpenOut.LAYOUT.format[1:])


def parse_attr(reply: Buffer, length: int, unique: int) -> rp.AttrOut | None:
    if length != ATTR_REPLY.size:
        return None
    v = _ATTR_VALUES(reply)
    if (v[0] != length or v[1] or v[2] != unique or v[4] >= NSEC_PER_SEC
            or v[11] >= NSEC_PER_SEC or v[12] >= NSEC_PER_SEC or v[13] >= NSEC_PER_SEC):
        return None
    return _ATTR_OUT(_ATTR_AT(v), v[3], v[4])


def _entry(v: tuple[int, ...], length: int, unique: int) -> rp.EntryOut | None:
    """The EntryOut of an unpacked fuse_entry_out reply (alone, or CREATE's), if plain."""
    if (v[0] != length or v[1] or v[2] != unique or v[7] >= NSEC_PER_SEC
            or v[8] >= NSEC_PER_SEC or v[15] >= NSEC_PER_SEC or v[16] >= NSEC_PER_SEC
            or v[17] >= NSEC_PER_SEC):
        return None
    return _ENTRY_OUT(v[3], v[4], _ATTR_ET(v), v[5], v[6], v[7], v[8])


def parse_entry(reply: Buffer, length: int, unique: int) -> rp.EntryOut | None:
    return _entry(_ENTRY_VALUES(reply), length, unique) if length == ENTRY_REPLY.size else None


def parse_create(reply: Buffer, length: int, unique: int) -> rp.CreateOut | None:
    if length != _CREATE_REPLY.size:
        return None
    v = _CREATE_REPLY.unpack_from(reply)
    entry = _entry(v, length, unique)
    return None if entry is None else _CREATE_OUT(entry, _OPEN_ET(v))


def _plain(reply: Buffer, length: int, layout: Struct, unique: int) -> tuple[int, ...] | None:
    if length != layout.size:
        return None
    v = layout.unpack_from(reply)
    return v if v[0] == length and not v[1] and v[2] == unique else None


def parse_open(reply: Buffer, length: int, unique: int) -> rp.OpenOut | None:
    v = _plain(reply, length, _OPEN_REPLY, unique)
    return None if v is None else _OPEN(v[3], v[4], v[5])


def parse_write(reply: Buffer, length: int, unique: int) -> rp.WriteOut | None:
    v = _plain(reply, length, _WRITE_REPLY, unique)
    return None if v is None else _WRITE_OUT(v[3])


def parse_empty(reply: Buffer, length: int, unique: int) -> rq.Empty | None:
    return None if _plain(reply, length, OUT_HEADER, unique) is None else rq.EMPTY


def parse_data(reply: Buffer, length: int, unique: int) -> rp.Data | None:
    if length < OUT_HEADER.size:
        return None
    size, error, got = OUT_HEADER.unpack_from(reply)
    if size != length or error or got != unique:
        return None
    return _DATA(bytes(memoryview(reply)[OUT_HEADER.size : length]))
