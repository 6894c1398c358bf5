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

from collections.abc import Callable
from operator import itemgetter
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

    __slots__ = ("_opcode", "_layout")

    def __init__(self, opcode: Opcode, body: type[FixedLayout]) -> None:
        self._opcode = int(opcode)
        self._layout = Struct(IN_HEADER.format + body.LAYOUT.format[1:])

    def encode(self, unique: int, nodeid: int, ids: Ids, *fields: int) -> bytes:
        """`fields` are the body's, in its dataclass's order, all of them."""
        layout = self._layout
        return pack(layout, layout.size, self._opcode, unique, nodeid, *ids, 0, *fields)


GETATTR = FixedRequest(Opcode.GETATTR, rq.GetattrIn)
FORGET = FixedRequest(Opcode.FORGET, rq.ForgetIn)
OPEN = FixedRequest(Opcode.OPEN, rq.OpenIn)
RELEASE = FixedRequest(Opcode.RELEASE, rq.ReleaseIn)
FLUSH = FixedRequest(Opcode.FLUSH, rq.FlushIn)
READ = FixedRequest(Opcode.READ, rq.ReadIn)
# by opcode, for a caller that names the opcode it sends
FIXED = {Opcode.GETATTR: GETATTR, Opcode.FORGET: FORGET, Opcode.OPEN: OPEN,
         Opcode.RELEASE: RELEASE, Opcode.FLUSH: FLUSH, Opcode.READ: READ}
_WRITE_HEAD = Struct(IN_HEADER.format + rq.ReadIn.LAYOUT.format[1:])  # fuse_write_in's too
_CREATE_HEAD = Struct(IN_HEADER.format + rq.CREATE_IN.format[1:])


def encode_name(opcode: Opcode, unique: int, nodeid: int, ids: Ids, name: bytes) -> bytes:
    """A request whose body is one name: LOOKUP, UNLINK, RMDIR."""
    body = cstring(name, "name")
    return pack(IN_HEADER, IN_HEADER.size + len(body), opcode, unique, nodeid, *ids, 0) + body


def encode_lookup(unique: int, nodeid: int, ids: Ids, name: bytes) -> bytes:
    return encode_name(Opcode.LOOKUP, unique, nodeid, ids, name)


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

_ATTR = rp.Attr.build
_ATTR_OUT = frozen_builder(rp.AttrOut)
_ENTRY_OUT = frozen_builder(rp.EntryOut)
_CREATE_OUT = frozen_builder(rp.CreateOut)
_DATA = frozen_builder(rp.Data)
_OPEN = rp.OpenOut.build
_WRITE_OUT = rp.WriteOut.build
if any(cls.KNOWN_BITS or cls.NSEC_FIELDS for cls in (rp.OpenOut, rp.WriteOut)):
    raise TypeError("a field of OpenOut or WriteOut is judged: parse it with from_values")


def _count(layout: Struct) -> int:
    return len(layout.unpack(bytes(layout.size)))


_HEAD = _count(OUT_HEADER)  # fields before the body's
_AT = _HEAD + _count(ATTR_OUT)  # where fuse_attr starts in ATTR_REPLY
_ET = _HEAD + _count(ENTRY_OUT)  # ... in ENTRY_REPLY
_AT_END = _AT + len(rp.Attr.__slots__)
_ET_END = _ET + len(rp.Attr.__slots__)


def _attr_nsecs(at: int) -> tuple[int, ...]:
    return tuple(at + rp.Attr.__slots__.index(f) for f in rp.Attr.NSEC_FIELDS)


# ATTR_REPLY: header, attr_valid, attr_valid_nsec, fuse_attr;  ENTRY_REPLY: header,
# nodeid, generation, entry_valid, attr_valid, entry_valid_nsec, attr_valid_nsec, fuse_attr
_ATTR_NSECS = itemgetter(_HEAD + 1, *_attr_nsecs(_AT))
_ENTRY_NSECS = itemgetter(_HEAD + 4, _HEAD + 5, *_attr_nsecs(_ET))
_ATTR_VALUES = ATTR_REPLY.unpack_from
_ENTRY_VALUES = ENTRY_REPLY.unpack_from
_OPEN_REPLY = Struct(OUT_HEADER.format + rp.OpenOut.LAYOUT.format[1:])
_WRITE_REPLY = Struct(OUT_HEADER.format + rp.WriteOut.LAYOUT.format[1:])
_CREATE_REPLY = Struct(ENTRY_REPLY.format + rp.OpenOut.LAYOUT.format[1:])


def parse_attr(reply: Buffer, length: int, unique: int) -> rp.AttrOut | None:
    if length != ATTR_REPLY.size:
        return None
    v = _ATTR_VALUES(reply)
    if v[0] != length or v[1] or v[2] != unique or max(_ATTR_NSECS(v)) >= NSEC_PER_SEC:
        return None
    return _ATTR_OUT(_ATTR(*v[_AT:_AT_END]), v[3], v[4])


def _entry(v: tuple[int, ...]) -> rp.EntryOut:
    return _ENTRY_OUT(v[3], v[4], _ATTR(*v[_ET:_ET_END]), v[5], v[6], v[7], v[8])


def parse_entry(reply: Buffer, length: int, unique: int) -> rp.EntryOut | None:
    if length != ENTRY_REPLY.size:
        return None
    v = _ENTRY_VALUES(reply)
    if v[0] != length or v[1] or v[2] != unique or max(_ENTRY_NSECS(v)) >= NSEC_PER_SEC:
        return None
    return _entry(v)


def parse_create(reply: Buffer, length: int, unique: int) -> rp.CreateOut | None:
    if length != _CREATE_REPLY.size:
        return None
    v = _CREATE_REPLY.unpack_from(reply)
    if v[0] != length or v[1] or v[2] != unique or max(_ENTRY_NSECS(v)) >= NSEC_PER_SEC:
        return None
    return _CREATE_OUT(_entry(v), _OPEN(*v[_ET_END:]))


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
