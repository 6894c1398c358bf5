"""Property tests of the FUSE codec: round trips, and rejection of every malformed message."""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pagefs.impl import protocol as p
from pagefs.impl.protocol import constants as c
from pagefs.impl.protocol import hot
from pagefs.impl.protocol.codec import IN_HEADER, LAYOUTS, OUT_HEADER

u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
nsec = st.integers(0, 10**9 - 1)
name = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x"))
entry_name = st.binary(min_size=1, max_size=40).map(
    lambda b: b.replace(b"\0", b"x").replace(b"/", b"y")
)


def bits(mask: int) -> st.SearchStrategy[int]:
    return st.integers(0, mask).map(lambda v: v & mask)


attr = st.builds(
    p.Attr, u64, u64, u64, u64, u64, u64, nsec, nsec, nsec, u32, u32, u32, u32, u32, u32, u32
)
entry_out = st.builds(p.EntryOut, u64, u64, attr, u64, u64, nsec, nsec)
open_out = st.builds(p.OpenOut, u64, u32)

REQUEST_BODIES: dict[int, st.SearchStrategy] = {
    c.Opcode.INIT: st.builds(p.InitIn, u32, u32, u32, u64),
    c.Opcode.DESTROY: st.just(p.EMPTY),
    c.Opcode.LOOKUP: st.builds(p.Name, name),
    c.Opcode.FORGET: st.builds(p.ForgetIn, u64),
    c.Opcode.BATCH_FORGET: st.lists(st.builds(p.ForgetOne, u64, u64), max_size=8).map(
        lambda e: p.BatchForgetIn(tuple(e))
    ),
    c.Opcode.INTERRUPT: st.builds(p.InterruptIn, u64),
    c.Opcode.GETATTR: st.builds(p.GetattrIn, bits(c.FUSE_GETATTR_FH), u64),
    c.Opcode.SETATTR: st.builds(
        p.SetattrIn, bits((1 << 12) - 1), u64, u64, u64, u64, u64, u64,
        nsec, nsec, nsec, u32, u32, u32,
    ),  # fmt: skip
    c.Opcode.READLINK: st.just(p.EMPTY),
    c.Opcode.SYMLINK: st.builds(p.SymlinkIn, name, name),
    c.Opcode.MKDIR: st.builds(p.MkdirIn, u32, name, u32),
    c.Opcode.UNLINK: st.builds(p.Name, name),
    c.Opcode.RMDIR: st.builds(p.Name, name),
    c.Opcode.RENAME: st.builds(p.RenameIn, u64, name, name),
    c.Opcode.RENAME2: st.builds(p.Rename2In, u64, name, name, bits(7)),
    c.Opcode.OPEN: st.builds(p.OpenIn, u32, bits(1)),
    c.Opcode.CREATE: st.builds(p.CreateIn, u32, u32, name, u32, bits(1)),
    c.Opcode.READ: st.builds(p.ReadIn, u64, u64, u32, bits(2), u64, u32),
    c.Opcode.WRITE: st.builds(p.WriteIn, u64, u64, st.binary(max_size=64), bits(7), u64, u32),
    c.Opcode.STATFS: st.just(p.EMPTY),
    c.Opcode.FLUSH: st.builds(p.FlushIn, u64, u64),
    c.Opcode.FSYNC: st.builds(p.FsyncIn, u64, bits(1)),
    c.Opcode.RELEASE: st.builds(p.ReleaseIn, u64, u32, bits(3), u64),
    c.Opcode.OPENDIR: st.builds(p.OpenIn, u32, bits(1)),
    c.Opcode.READDIR: st.builds(p.ReadIn, u64, u64, u32, bits(2), u64, u32),
    c.Opcode.RELEASEDIR: st.builds(p.ReleaseIn, u64, u32, bits(3), u64),
    c.Opcode.FSYNCDIR: st.builds(p.FsyncIn, u64, bits(1)),
    c.Opcode.SETUPMAPPING: st.builds(p.SetupmappingIn, u64, u64, u64, bits(3), u64),
    c.Opcode.REMOVEMAPPING: st.lists(
        st.builds(p.RemovemappingOne, u64, u64),
        min_size=1,
        max_size=c.FUSE_REMOVEMAPPING_MAX_ENTRY,
    ).map(lambda e: p.RemovemappingIn(tuple(e))),
    c.Opcode.LINK: st.builds(p.LinkIn, u64, name),
    c.Opcode.MKNOD: st.builds(p.MknodIn, u32, u32, name, u32),
    c.Opcode.SETXATTR: st.builds(p.SetxattrIn, name, st.binary(max_size=64), u32),
    c.Opcode.GETXATTR: st.builds(p.GetxattrIn, name, u32),
    c.Opcode.LISTXATTR: st.builds(p.ListxattrIn, u32),
    c.Opcode.REMOVEXATTR: st.builds(p.Name, name),
    c.Opcode.FALLOCATE: st.builds(p.FallocateIn, u64, u64, u64, u32),
    c.Opcode.SYNCFS: st.just(p.SyncfsIn()),
}

REPLY_BODIES: dict[type, st.SearchStrategy] = {
    p.Empty: st.just(p.EMPTY),
    p.InitOut: st.builds(p.InitOut, u32, u32, u32, u64, u16, u16, u32, u32, u16, u16, u32, u16),
    p.EntryOut: entry_out,
    p.AttrOut: st.builds(p.AttrOut, attr, u64, nsec),
    p.OpenOut: open_out,
    p.CreateOut: st.builds(p.CreateOut, entry_out, open_out),
    p.WriteOut: st.builds(p.WriteOut, u32),
    p.StatfsOut: st.builds(p.StatfsOut, u64, u64, u64, u64, u64, u32, u32, u32),
    p.Data: st.builds(p.Data, st.binary(max_size=64)),
    p.Dirents: st.lists(st.builds(p.Dirent, u64, u64, st.integers(0, 15), entry_name)).map(
        lambda e: p.Dirents(tuple(e))
    ),
}
# Replies whose size fuse.h fixes, so that any other size is malformed.
FIXED_REPLIES = (p.EntryOut, p.AttrOut, p.OpenOut, p.CreateOut, p.WriteOut, p.StatfsOut)


def test_every_supported_opcode_has_a_strategy() -> None:
    assert set(REQUEST_BODIES) == set(LAYOUTS)


@st.composite
def requests(draw: st.DrawFn, opcodes: tuple[int, ...] = tuple(REQUEST_BODIES)) -> p.Request:
    opcode = draw(st.sampled_from(opcodes))
    body = draw(REQUEST_BODIES[opcode])
    return p.Request(c.Opcode(opcode), draw(u64), draw(u64), body, draw(u32), draw(u32), draw(u32))


@st.composite
def replies(draw: st.DrawFn) -> tuple[int, p.Reply]:
    opcode = draw(st.sampled_from([op for op, (_, out) in LAYOUTS.items() if out is not None]))
    body = draw(REPLY_BODIES[LAYOUTS[opcode][1]])
    return opcode, p.Reply(draw(u64), body)


def with_body(message: bytes, body: bytes, header: struct.Struct) -> bytes:
    """The same message with another body and a header `len` that agrees with it."""
    return struct.pack("<I", header.size + len(body)) + message[4 : header.size] + body


def rejects(decode, *args) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        decode(*args)
    return info.value


@given(requests())
def test_request_round_trip(request: p.Request) -> None:
    wire = p.encode_request(request)
    assert struct.unpack_from("<I", wire)[0] == len(wire)
    assert p.decode_request(wire) == request


@given(requests())
def test_request_values_are_the_decoded_request(request: p.Request) -> None:
    assert p.decode_request_values(p.encode_request(request)) == tuple(
        getattr(request, f) for f in p.Request.__slots__
    )


@given(u64, attr, u64)
def test_one_call_attr_reply_is_the_typed_one(unique: int, fields: p.Attr, valid: int) -> None:
    values = tuple(getattr(fields, f) for f in p.Attr.__slots__)
    assert p.encode_attr_reply(unique, values) == p.encode_reply(unique, p.AttrOut(fields))
    assert p.encode_attr_reply(unique, values, valid) == p.encode_reply(
        unique, p.AttrOut(fields, valid))


@given(u64, u64, u64, attr, u64, u64)
def test_one_call_entry_reply_is_the_typed_one(
    unique: int, nodeid: int, generation: int, fields: p.Attr, entry_valid: int, attr_valid: int
) -> None:
    values = tuple(getattr(fields, f) for f in p.Attr.__slots__)
    typed = p.encode_reply(unique, p.EntryOut(nodeid, generation, fields))
    assert p.encode_entry_reply(unique, nodeid, generation, values) == typed
    typed = p.encode_reply(unique, p.EntryOut(nodeid, generation, fields, entry_valid, attr_valid))
    assert p.encode_entry_reply(unique, nodeid, generation, values, entry_valid,
                                attr_valid) == typed


def test_one_call_replies_refuse_out_of_range_fields() -> None:
    values = (0,) * 15 + (2**32,)
    rejects(p.encode_attr_reply, 1, values)
    rejects(p.encode_entry_reply, 1, 2, 3, values)


@given(replies())
def test_reply_round_trip(case: tuple[int, p.Reply]) -> None:
    opcode, reply = case
    assert p.decode_reply(p.encode_reply(reply.unique, reply.body), opcode) == reply


@given(st.sampled_from([op for op, (_, out) in LAYOUTS.items() if out]), u64, st.integers(1, 511))
def test_error_reply_round_trip(opcode: int, unique: int, err: int) -> None:
    wire = p.encode_error(unique, err)
    assert len(wire) == OUT_HEADER.size
    assert p.decode_reply(wire, opcode) == p.Reply(unique, p.EMPTY, err)


@given(requests(), st.data())
def test_truncated_request_is_rejected(request: p.Request, data: st.DataObject) -> None:
    wire = p.encode_request(request)
    cut = data.draw(st.integers(0, len(wire) - 1))
    # Cut bytes with the header left alone: the length no longer agrees.
    error = rejects(p.decode_request, wire[:cut])
    assert error.errno == errno.EINVAL
    # Cut body with a header that agrees: the body itself is short.
    body = wire[IN_HEADER.size :]
    short = data.draw(st.integers(0, len(body) - 1)) if body else None
    assume(short is not None)
    assume(not (request.opcode == c.Opcode.INIT and short == 16))  # the pre-7.36 fuse_init_in
    error = rejects(p.decode_request, with_body(wire, body[:short], IN_HEADER))
    assert error.errno == errno.EINVAL and error.unique == request.unique


@given(requests(), st.binary(min_size=1, max_size=24))
def test_oversized_request_is_rejected(request: p.Request, extra: bytes) -> None:
    wire = p.encode_request(request)
    rejects(p.decode_request, wire + extra)
    error = rejects(p.decode_request, with_body(wire, wire[IN_HEADER.size :] + extra, IN_HEADER))
    assert error.errno == errno.EINVAL and error.opcode == request.opcode


@given(replies(), st.data())
def test_truncated_or_oversized_reply_is_rejected(
    case: tuple[int, p.Reply], data: st.DataObject
) -> None:
    opcode, reply = case
    wire = p.encode_reply(reply.unique, reply.body)
    cut = data.draw(st.integers(0, len(wire) - 1))
    assert rejects(p.decode_reply, wire[:cut], opcode).errno == errno.EPROTO
    if isinstance(reply.body, FIXED_REPLIES):
        body = wire[OUT_HEADER.size :]
        short = body[: data.draw(st.integers(0, len(body) - 1))]
        assert rejects(p.decode_reply, with_body(wire, short, OUT_HEADER), opcode).errno == (
            errno.EPROTO
        )
        long = body + data.draw(st.binary(min_size=1, max_size=16))
        rejects(p.decode_reply, with_body(wire, long, OUT_HEADER), opcode)


@given(requests(), st.data())
def test_corrupted_request_decodes_or_is_rejected_cleanly(
    request: p.Request, data: st.DataObject
) -> None:
    wire = bytearray(p.encode_request(request))
    for _ in range(data.draw(st.integers(1, 4))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = p.decode_request(bytes(wire))
    except p.ProtocolError:
        return
    # Whatever is accepted is a well-formed message (padding may have been what changed).
    assert p.decode_request(p.encode_request(decoded)) == decoded


@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_protocol_error(raw: bytes) -> None:
    try:
        p.decode_request(raw)
    except p.ProtocolError:
        pass
    for opcode in LAYOUTS:
        try:
            p.decode_reply(raw, opcode)
        except p.ProtocolError:
            pass


@given(st.sampled_from(sorted(LAYOUTS)), st.binary(max_size=120), u64)
def test_random_body_behind_a_valid_header_only_ever_raises_protocol_error(
    opcode: int, body: bytes, unique: int
) -> None:
    header = IN_HEADER.pack(IN_HEADER.size + len(body), opcode, unique, 1, 0, 0, 0, 0)
    try:
        p.decode_request(header + body)
    except p.ProtocolError as exc:
        assert exc.unique == unique and exc.errno == errno.EINVAL
    reply = OUT_HEADER.pack(OUT_HEADER.size + len(body), 0, unique) + body
    try:
        p.decode_reply(reply, opcode)
    except p.ProtocolError as exc:
        assert exc.errno == errno.EPROTO


# --- Field rules: each corruption that makes a message wrong, made on purpose ---


def _set(wire: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(wire)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@given(st.integers(0, 2**32 - 1), requests())
def test_header_len_must_match(length: int, request: p.Request) -> None:
    wire = p.encode_request(request)
    assume(length != len(wire))
    assert rejects(p.decode_request, _set(wire, 0, "<I", length)).errno == errno.EINVAL


@given(requests(), st.integers(1, 2**16 - 1))
def test_extension_headers_are_refused(request: p.Request, extlen: int) -> None:
    assert rejects(p.decode_request, _set(p.encode_request(request), 36, "<I", extlen))


@given(st.integers(0, 2**32 - 1))
def test_unknown_opcode_is_enosys_with_its_unique(opcode: int) -> None:
    assume(opcode not in LAYOUTS)
    wire = IN_HEADER.pack(IN_HEADER.size, opcode, 77, 1, 0, 0, 0, 0)
    error = rejects(p.decode_request, wire)
    assert (error.errno, error.unique, error.opcode) == (errno.ENOSYS, 77, opcode)


@given(requests((c.Opcode.BATCH_FORGET, c.Opcode.REMOVEMAPPING)), st.integers(0, 2**32 - 1))
def test_counts_must_match_the_length(request: p.Request, count: int) -> None:
    assume(count != len(request.body.entries))
    wire = _set(p.encode_request(request), IN_HEADER.size, "<I", count)
    assert rejects(p.decode_request, wire).errno == errno.EINVAL


def test_removemapping_count_limits() -> None:
    one = p.RemovemappingOne(0, 1 << 21)
    limit = c.FUSE_REMOVEMAPPING_MAX_ENTRY
    ok = p.Request(c.Opcode.REMOVEMAPPING, 1, 1, p.RemovemappingIn((one,) * limit))
    assert p.decode_request(p.encode_request(ok)) == ok
    for count in (0, limit + 1):
        bad = p.Request(c.Opcode.REMOVEMAPPING, 1, 1, p.RemovemappingIn((one,) * count))
        assert rejects(p.decode_request, p.encode_request(bad)).errno == errno.EINVAL


@given(requests((c.Opcode.LOOKUP, c.Opcode.SYMLINK, c.Opcode.RENAME, c.Opcode.CREATE)))
def test_names_must_be_nul_terminated(request: p.Request) -> None:
    wire = p.encode_request(request)
    assert rejects(p.decode_request, wire[:-1] + b"x").errno == errno.EINVAL
    # A NUL too many is a string too many.
    assert rejects(p.decode_request, with_body(wire, wire[40:] + b"\0", IN_HEADER))


def test_names_with_nul_cannot_be_encoded() -> None:
    rejects(p.encode_request, p.Request(c.Opcode.LOOKUP, 1, 1, p.Name(b"a\0b")))


@given(requests((c.Opcode.WRITE,)), st.integers(0, 2**32 - 1))
def test_write_size_must_match_its_data(request: p.Request, size: int) -> None:
    assume(size != len(request.body.data))
    wire = _set(p.encode_request(request), IN_HEADER.size + 16, "<I", size)
    assert rejects(p.decode_request, wire).errno == errno.EINVAL


FLAG_FIELDS = [  # (opcode, offset of the flags field in the body, format, known bits)
    (c.Opcode.GETATTR, 0, "<I", c.FUSE_GETATTR_FH),
    (c.Opcode.SETATTR, 0, "<I", (1 << 12) - 1),
    (c.Opcode.OPEN, 4, "<I", c.FUSE_OPEN_KILL_SUIDGID),
    (c.Opcode.CREATE, 12, "<I", c.FUSE_OPEN_KILL_SUIDGID),
    (c.Opcode.READ, 20, "<I", c.FUSE_READ_LOCKOWNER),
    (c.Opcode.WRITE, 20, "<I", 7),
    (c.Opcode.RELEASE, 12, "<I", 3),
    (c.Opcode.FSYNC, 8, "<I", c.FUSE_FSYNC_FDATASYNC),
    (c.Opcode.RENAME2, 8, "<I", 7),
    (c.Opcode.SETUPMAPPING, 24, "<Q", 3),
]


@pytest.mark.parametrize(("opcode", "offset", "fmt", "known"), FLAG_FIELDS)
@given(data=st.data())
def test_unknown_flag_bits_are_refused(
    opcode: int, offset: int, fmt: str, known: int, data: st.DataObject
) -> None:
    request = data.draw(requests((opcode,)))
    width = struct.calcsize(fmt) * 8
    bit = data.draw(st.integers(0, width - 1).filter(lambda b: not known >> b & 1))
    wire = p.encode_request(request)
    (value,) = struct.unpack_from(fmt, wire, IN_HEADER.size + offset)
    wire = _set(wire, IN_HEADER.size + offset, fmt, value | 1 << bit)
    assert rejects(p.decode_request, wire).errno == errno.EINVAL


@given(requests((c.Opcode.SETATTR,)), st.integers(0, 2), st.integers(10**9, 2**32 - 1))
def test_nanoseconds_must_be_below_a_second(request: p.Request, which: int, ns: int) -> None:
    wire = _set(p.encode_request(request), IN_HEADER.size + 56 + 4 * which, "<I", ns)
    assert rejects(p.decode_request, wire).errno == errno.EINVAL


@given(u64, st.integers(-(2**31), 2**31 - 1), st.sampled_from([c.Opcode.GETATTR, c.Opcode.READ]))
def test_reply_error_must_be_a_small_negative_errno(unique: int, error: int, opcode: int) -> None:
    wire = OUT_HEADER.pack(OUT_HEADER.size, error, unique)
    if -512 < error < 0:
        assert p.decode_reply(wire, opcode).error == -error
    elif error != 0:
        assert rejects(p.decode_reply, wire, opcode).errno == errno.EPROTO


def test_error_reply_must_not_carry_a_body() -> None:
    wire = OUT_HEADER.pack(OUT_HEADER.size + 8, -errno.ENOENT, 5) + bytes(8)
    assert rejects(p.decode_reply, wire, c.Opcode.LOOKUP).errno == errno.EPROTO


def test_requests_without_a_reply() -> None:
    for opcode in (c.Opcode.FORGET, c.Opcode.BATCH_FORGET, c.Opcode.INTERRUPT):
        assert not p.expects_reply(opcode)
        rejects(p.decode_reply, OUT_HEADER.pack(16, 0, 1), opcode)
    assert p.expects_reply(c.Opcode.LOOKUP) and p.expects_reply(9999)


@given(st.lists(st.builds(p.Dirent, u64, u64, st.integers(0, 15), entry_name), min_size=1))
def test_dirent_records_are_8_byte_aligned(entries: list[p.Dirent]) -> None:
    wire = p.Dirents(tuple(entries)).encode()
    assert len(wire) == sum(p.dirent_size(len(e.name)) for e in entries)
    assert all(p.dirent_size(len(e.name)) % 8 == 0 for e in entries)


@pytest.mark.parametrize("bad", [b"", b"a/b", b"a\0b", b"x" * (c.FUSE_NAME_MAX + 1)])
def test_bad_dirent_names_are_refused_both_ways(bad: bytes) -> None:
    rejects(p.Dirents((p.Dirent(1, 1, 8, bad),)).encode)
    record = struct.pack("<QQII", 1, 1, len(bad), 8) + bad
    record += bytes(-len(record) % 8)
    rejects(p.decode_reply, OUT_HEADER.pack(16 + len(record), 0, 1) + record, c.Opcode.READDIR)


HOT_PARSERS = {
    c.Opcode.GETATTR: hot.parse_attr, c.Opcode.LOOKUP: hot.parse_entry,
    c.Opcode.CREATE: hot.parse_create, c.Opcode.OPEN: hot.parse_open,
    c.Opcode.WRITE: hot.parse_write, c.Opcode.READ: hot.parse_data,
    c.Opcode.RELEASE: hot.parse_empty, c.Opcode.FLUSH: hot.parse_empty,
    c.Opcode.UNLINK: hot.parse_empty,
}


# fuse_attr and its timeouts with nanoseconds past a second too: only decode judges them
any_nsec = st.one_of(nsec, st.integers(10**9, 2**32 - 1))
wide_attr = st.builds(p.Attr, u64, u64, u64, u64, u64, u64, any_nsec, any_nsec, any_nsec, u32,
                      u32, u32, u32, u32, u32, u32)
wide_entry = st.builds(p.EntryOut, u64, u64, wide_attr, u64, u64, any_nsec, any_nsec)
WIDE_BODIES = {**REPLY_BODIES, p.AttrOut: st.builds(p.AttrOut, wide_attr, u64, any_nsec),
               p.EntryOut: wide_entry, p.CreateOut: st.builds(p.CreateOut, wide_entry, open_out)}


@st.composite
def hot_replies(draw: st.DrawFn, bodies: dict[type, st.SearchStrategy] = REPLY_BODIES
                ) -> tuple[int, int, bytes]:
    opcode = draw(st.sampled_from(sorted(HOT_PARSERS)))
    unique = draw(u64)
    return opcode, unique, p.encode_reply(unique, draw(bodies[LAYOUTS[opcode][1]]))


@given(hot_replies(), st.binary(max_size=16))
def test_hot_parsers_give_the_codec_s_body(case: tuple[int, int, bytes], after: bytes) -> None:
    opcode, unique, wire = case
    parsed = HOT_PARSERS[opcode](bytearray(wire + after), len(wire), unique)
    body = p.decode_reply(wire, opcode).body
    assert parsed == body and type(parsed) is type(body) and repr(parsed) == repr(body)


@given(hot_replies(WIDE_BODIES), st.integers(0, 2**16), st.integers(0, 255),
       st.sampled_from([0, -errno.ENOENT, errno.EIO, -600]), u64, st.integers(-1, 1))
def test_hot_parsers_take_only_what_the_codec_takes_as_success(
    case: tuple[int, int, bytes], at: int, value: int, error: int, asked: int, resize: int
) -> None:
    """Any reply (bad nanoseconds, an error, a byte changed, another size, another
    request's): a hot parser gives the codec's successful body for this request, or
    declines (None), and never raises."""
    opcode, unique, wire = case
    changed = bytearray(wire)
    changed[at % len(changed)] = value
    errored = bytearray(wire)
    struct.pack_into("<i", errored, 4, error)
    resized = struct.pack("<I", len(wire) + resize) + wire[4:] if resize >= 0 else wire[:-1]
    for reply, wanted in ((wire, unique), (bytes(changed), unique), (bytes(errored), unique),
                          (resized, unique), (wire, asked)):
        parsed = HOT_PARSERS[opcode](reply, len(reply), wanted)
        if parsed is not None:
            decoded = p.decode_reply(reply, opcode)
            assert (decoded.unique, decoded.error, decoded.body) == (wanted, 0, parsed)
