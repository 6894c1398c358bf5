"""The requests a guest sends most, in one struct call each way.

GETATTR, FORGET, OPEN, RELEASE, FLUSH and READ (a fixed body), LOOKUP (a name) and WRITE
(data) are encoded straight from their fields, header and body in one pack, with no
Request or body dataclass made on the way; their plain successful replies are decoded in
one unpack into the very reply body classes `decode_reply` gives. The layouts are the
ones requests.py, replies.py and codec.py define (joined here, never restated), the bytes
are those of `encode_request`, and a reply checks as `decode_reply` checks it. A reply
that is not the plain success of its shape (an error, another length, another request's)
gives None: the caller then decodes it with `decode_reply`, so errors and malformed
replies are judged in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct

from . import replies as rp
from . import requests as rq
from ._wire import Buffer, FixedLayout, cstring, nanoseconds, pack
from .codec import ATTR_REPLY, ENTRY_REPLY, IN_HEADER, OUT_HEADER
from .constants import Opcode

Ids = tuple[int, int, int]  # fuse_in_header uid, gid, pid
HotParser = Callable[[Buffer, int], object]


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


def encode_lookup(unique: int, nodeid: int, ids: Ids, name: bytes) -> bytes:
    body = cstring(name, "name")
    size = IN_HEADER.size + len(body)
    return pack(IN_HEADER, size, Opcode.LOOKUP, unique, nodeid, *ids, 0) + body


def encode_write(unique: int, nodeid: int, ids: Ids, fh: int, offset: int, data: bytes) -> bytes:
    size = _WRITE_HEAD.size + len(data)
    return pack(_WRITE_HEAD, size, Opcode.WRITE, unique, nodeid, *ids, 0, fh, offset,
                len(data), 0, 0, 0) + data


# ---- replies: each gives the body, or None for anything but the plain success --------

_OPEN_REPLY = Struct(OUT_HEADER.format + rp.OpenOut.LAYOUT.format[1:])
_WRITE_REPLY = Struct(OUT_HEADER.format + rp.WriteOut.LAYOUT.format[1:])


def _plain(reply: Buffer, layout: Struct, unique: int) -> tuple[int, ...] | None:
    if len(reply) != layout.size:
        return None
    values = layout.unpack_from(reply)
    return values if values[0] == layout.size and not values[1] and values[2] == unique else None


def parse_attr(reply: Buffer, unique: int) -> rp.AttrOut | None:
    v = _plain(reply, ATTR_REPLY, unique)
    if v is None:
        return None
    return rp.AttrOut(rp.Attr.from_values(v[5:]), v[3], nanoseconds(v[4], "attr_valid_nsec"))


def parse_entry(reply: Buffer, unique: int) -> rp.EntryOut | None:
    v = _plain(reply, ENTRY_REPLY, unique)
    if v is None:
        return None
    return rp.EntryOut(v[3], v[4], rp.Attr.from_values(v[9:]), v[5], v[6],
                       nanoseconds(v[7], "entry_valid_nsec"),
                       nanoseconds(v[8], "attr_valid_nsec"))  # fmt: skip


def parse_open(reply: Buffer, unique: int) -> rp.OpenOut | None:
    v = _plain(reply, _OPEN_REPLY, unique)
    return None if v is None else rp.OpenOut.from_values(v[3:])


def parse_write(reply: Buffer, unique: int) -> rp.WriteOut | None:
    v = _plain(reply, _WRITE_REPLY, unique)
    return None if v is None else rp.WriteOut.from_values(v[3:])


def parse_empty(reply: Buffer, unique: int) -> rq.Empty | None:
    return None if _plain(reply, OUT_HEADER, unique) is None else rq.EMPTY


def parse_data(reply: Buffer, unique: int) -> rp.Data | None:
    if len(reply) < OUT_HEADER.size:
        return None
    length, error, got = OUT_HEADER.unpack_from(reply)
    if length != len(reply) or error or got != unique:
        return None
    return rp.Data(bytes(reply[OUT_HEADER.size :]))
