"""Whole FUSE messages: fuse_in_header + request body, fuse_out_header + reply body.

    decode_request(buf) -> Request          encode_request(Request) -> bytes
    encode_reply(unique, body) -> bytes     encode_error(unique, errno) -> bytes
    decode_reply(buf, opcode) -> Reply

A server's hot path may skip the dataclasses: `decode_request_values` gives the Request's
fields as a tuple, and `encode_attr_reply` / `encode_entry_reply` pack the whole reply to
GETATTR and to LOOKUP-like requests from the fuse_attr values in one call.

Decoding raises ProtocolError and nothing else, whatever the bytes.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from struct import Struct

from . import extra_requests as xr
from . import replies as rp
from . import requests as rq
from ._wire import Buffer, pack
from .constants import Opcode
from .errors import ProtocolError

IN_HEADER = Struct("<IIQQIIII")
OUT_HEADER = Struct("<IiQ")
# The guest kernel accepts errors in (-512, 0] only (fs/fuse/dev.c).
ERRNO_LIMIT = 512
# The most frequent replies as one struct each, header to last fuse_attr field, so the
# server packs them in one call: fuse_out_header + fuse_attr_out / fuse_entry_out + fuse_attr.
ATTR_REPLY = Struct(OUT_HEADER.format + rp.ATTR_OUT.format[1:] + rp.Attr.LAYOUT.format[1:])
ENTRY_REPLY = Struct(OUT_HEADER.format + rp.ENTRY_OUT.format[1:] + rp.Attr.LAYOUT.format[1:])

RequestBody = (
    rq.Empty | rq.InitIn | rq.Name | rq.ForgetIn | rq.BatchForgetIn | rq.GetattrIn
    | rq.SetattrIn | rq.SymlinkIn | rq.MkdirIn | rq.RenameIn | rq.Rename2In | rq.OpenIn
    | rq.CreateIn | rq.ReadIn | rq.WriteIn | rq.ReleaseIn | rq.FlushIn | rq.FsyncIn
    | rq.InterruptIn | rq.SetupmappingIn | rq.RemovemappingIn | xr.LinkIn | xr.MknodIn
    | xr.SetxattrIn | xr.GetxattrIn | xr.ListxattrIn | xr.FallocateIn | xr.SyncfsIn
)  # fmt: skip
ReplyBody = (
    rq.Empty | rp.InitOut | rp.EntryOut | rp.AttrOut | rp.OpenOut | rp.CreateOut
    | rp.WriteOut | rp.StatfsOut | rp.Data | rp.Dirents | xr.XattrSizeOut
)  # fmt: skip

# opcode -> (request body class, reply body class or None when the request has no reply)
LAYOUTS: dict[int, tuple[type[RequestBody], type[ReplyBody] | None]] = {
    Opcode.INIT: (rq.InitIn, rp.InitOut),
    Opcode.DESTROY: (rq.Empty, rq.Empty),
    Opcode.LOOKUP: (rq.Name, rp.EntryOut),
    Opcode.FORGET: (rq.ForgetIn, None),
    Opcode.BATCH_FORGET: (rq.BatchForgetIn, None),
    Opcode.INTERRUPT: (rq.InterruptIn, None),
    Opcode.GETATTR: (rq.GetattrIn, rp.AttrOut),
    Opcode.SETATTR: (rq.SetattrIn, rp.AttrOut),
    Opcode.READLINK: (rq.Empty, rp.Data),
    Opcode.SYMLINK: (rq.SymlinkIn, rp.EntryOut),
    Opcode.MKDIR: (rq.MkdirIn, rp.EntryOut),
    Opcode.UNLINK: (rq.Name, rq.Empty),
    Opcode.RMDIR: (rq.Name, rq.Empty),
    Opcode.RENAME: (rq.RenameIn, rq.Empty),
    Opcode.RENAME2: (rq.Rename2In, rq.Empty),
    Opcode.OPEN: (rq.OpenIn, rp.OpenOut),
    Opcode.CREATE: (rq.CreateIn, rp.CreateOut),
    Opcode.READ: (rq.ReadIn, rp.Data),
    Opcode.WRITE: (rq.WriteIn, rp.WriteOut),
    Opcode.STATFS: (rq.Empty, rp.StatfsOut),
    Opcode.FLUSH: (rq.FlushIn, rq.Empty),
    Opcode.FSYNC: (rq.FsyncIn, rq.Empty),
    Opcode.RELEASE: (rq.ReleaseIn, rq.Empty),
    Opcode.OPENDIR: (rq.OpenIn, rp.OpenOut),
    Opcode.READDIR: (rq.ReadIn, rp.Dirents),
    Opcode.RELEASEDIR: (rq.ReleaseIn, rq.Empty),
    Opcode.FSYNCDIR: (rq.FsyncIn, rq.Empty),
    Opcode.SETUPMAPPING: (rq.SetupmappingIn, rq.Empty),
    Opcode.REMOVEMAPPING: (rq.RemovemappingIn, rq.Empty),
    Opcode.LINK: (xr.LinkIn, rp.EntryOut),
    Opcode.MKNOD: (xr.MknodIn, rp.EntryOut),
    # the reply is the value (or names), or fuse_getxattr_out when the request's size is 0:
    # only the requester knows which, so both travel as Data (see XattrSizeOut)
    Opcode.SETXATTR: (xr.SetxattrIn, rq.Empty),
    Opcode.GETXATTR: (xr.GetxattrIn, rp.Data),
    Opcode.LISTXATTR: (xr.ListxattrIn, rp.Data),
    Opcode.REMOVEXATTR: (rq.Name, rq.Empty),
    Opcode.FALLOCATE: (xr.FallocateIn, rq.Empty),
    Opcode.SYNCFS: (xr.SyncfsIn, rq.Empty),
}


# The enum member of each opcode we serve, found without calling Opcode() per message.
_OPCODES: dict[int, Opcode] = {int(opcode): Opcode(opcode) for opcode in LAYOUTS}


def expects_reply(opcode: int) -> bool:
    """FORGET, BATCH_FORGET and INTERRUPT are answered with nothing at all, not even a header."""
    layout = LAYOUTS.get(opcode)
    return layout is None or layout[1] is not None


@dataclass(frozen=True, slots=True)
class Request:
    """A request: the fuse_in_header fields (less `len`, which is derived) and its body."""

    opcode: Opcode
    unique: int
    nodeid: int
    body: RequestBody
    uid: int = 0
    gid: int = 0
    pid: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply: `error` is a positive errno (0 on success); an error reply has an empty body."""

    unique: int
    body: ReplyBody = rq.EMPTY
    error: int = 0


def encode_request(request: Request) -> bytes:
    layout = LAYOUTS.get(request.opcode)
    if layout is None or type(request.body) is not layout[0]:
        name = type(request.body).__name__
        raise ProtocolError(errno.EINVAL, f"{name} is not the body of opcode {request.opcode}")
    body = request.body.encode()
    header = pack(
        IN_HEADER, IN_HEADER.size + len(body), request.opcode, request.unique, request.nodeid,
        request.uid, request.gid, request.pid, 0,
    )  # fmt: skip
    return header + body


def decode_request(buf: Buffer) -> Request:
    return Request(*decode_request_values(buf))


def decode_request_values(
    buf: Buffer,
) -> tuple[Opcode, int, int, RequestBody, int, int, int]:
    """decode_request's fields in Request's order, without building the Request: what a
    server needs per request costs one tuple (same checks, same errors)."""
    view = memoryview(buf)
    if len(view) < IN_HEADER.size:
        raise ProtocolError(errno.EINVAL, f"request of {len(view)} bytes has no fuse_in_header")
    length, opcode, unique, nodeid, uid, gid, pid, extlen = IN_HEADER.unpack_from(view)
    if length != len(view):
        message = f"header len {length} but the request has {len(view)} bytes"
        raise _refused(errno.EINVAL, message, unique, opcode)
    if extlen:
        # total_extlen (7.38): extension headers exist only when negotiated, and we never do.
        message = f"extension headers ({extlen} x 8 bytes) were not negotiated"
        raise _refused(errno.EINVAL, message, unique, opcode)
    member = _OPCODES.get(opcode)
    if member is None:
        raise _refused(errno.ENOSYS, f"opcode {opcode} is not supported", unique, opcode)
    try:
        body = LAYOUTS[opcode][0].decode(view[IN_HEADER.size :])
    except ProtocolError as exc:
        raise _refused(exc.errno, f"{member.name}: {exc}", unique, opcode) from None
    return member, unique, nodeid, body, uid, gid, pid


def _refused(err: int, message: str, unique: int, opcode: int) -> ProtocolError:
    """A request refused after its header was read: the server can still answer it."""
    return ProtocolError(err, message, unique=unique, opcode=opcode)


def encode_reply(unique: int, body: ReplyBody) -> bytes:
    payload = body.encode()
    return pack(OUT_HEADER, OUT_HEADER.size + len(payload), 0, unique) + payload


def encode_attr_reply(unique: int, attr: tuple[int, ...], attr_valid: int = 0) -> bytes:
    """encode_reply(unique, AttrOut(Attr(*attr), attr_valid)), packed in one call: `attr`
    holds the fuse_attr fields in Attr's order (flags last); timeouts in whole seconds."""
    return pack(ATTR_REPLY, ATTR_REPLY.size, 0, unique, attr_valid, 0, *attr)


def encode_entry_reply(unique: int, nodeid: int, generation: int, attr: tuple[int, ...],
                       entry_valid: int = 0, attr_valid: int = 0) -> bytes:
    """encode_reply(unique, EntryOut(nodeid, generation, Attr(*attr), entry_valid,
    attr_valid)) in one call; timeouts in whole seconds."""
    return pack(ENTRY_REPLY, ENTRY_REPLY.size, 0, unique, nodeid, generation, entry_valid,
                attr_valid, 0, 0, *attr)


def encode_error(unique: int, err: int) -> bytes:
    if not 0 < err < ERRNO_LIMIT:
        raise ProtocolError(errno.EINVAL, f"errno {err} is outside 1..{ERRNO_LIMIT - 1}")
    return pack(OUT_HEADER, OUT_HEADER.size, -err, unique)


def decode_reply(buf: Buffer, opcode: int) -> Reply:
    """Decode the reply to a request of `opcode` (the header does not say which it answers)."""
    view = memoryview(buf)
    if len(view) < OUT_HEADER.size:
        raise ProtocolError(errno.EPROTO, f"reply of {len(view)} bytes has no fuse_out_header")
    length, error, unique = OUT_HEADER.unpack_from(view)
    if length != len(view):
        raise _bad_reply(f"header len {length} but the reply has {len(view)} bytes", unique, opcode)
    if not -ERRNO_LIMIT < error <= 0:
        raise _bad_reply(f"reply error {error} is not a negative errno", unique, opcode)
    if not expects_reply(opcode):
        raise _bad_reply(f"opcode {opcode} has no reply", unique, opcode)
    if error:  # any opcode, ours or not, may be answered with an errno (ENOSYS first)
        if length != OUT_HEADER.size:
            message = f"error reply carries {length - OUT_HEADER.size} bytes of body"
            raise _bad_reply(message, unique, opcode)
        return Reply(unique, rq.EMPTY, -error)
    layout = LAYOUTS.get(opcode)
    if layout is None or layout[1] is None:
        raise _bad_reply(f"opcode {opcode} is not supported or takes no reply", unique, opcode)
    try:
        body = layout[1].decode(view[OUT_HEADER.size :])
    except ProtocolError as exc:
        raise _bad_reply(f"{Opcode(opcode).name} reply: {exc}", unique, opcode) from None
    return Reply(unique, body)


def _bad_reply(message: str, unique: int, opcode: int) -> ProtocolError:
    """A reply the server got wrong: EPROTO, whatever the fault."""
    return ProtocolError(errno.EPROTO, message, unique=unique, opcode=opcode)
