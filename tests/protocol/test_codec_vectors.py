"""Known-answer vectors: bytes laid out by hand from include/uapi/linux/fuse.h, field by field."""

from __future__ import annotations

import errno

import pytest

from pagefs.impl import protocol as p
from pagefs.impl.protocol import constants as c
from pagefs.impl.protocol import replies
from pagefs.impl.protocol.virtio_fs import (
    HIPRIO_OPCODES,
    HIPRIO_QUEUE,
    TAG_SIZE,
    VIRTIO_ID_FS,
    VirtioFsConfig,
    request_queue,
)


def le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little", signed=value < 0)


def in_header(length: int, opcode: int, unique: int, nodeid: int) -> bytes:
    # fuse_in_header: len, opcode, unique, nodeid, uid, gid, pid, padding
    return (
        le(length, 4) + le(opcode, 4) + le(unique, 8) + le(nodeid, 8)
        + le(1000, 4) + le(100, 4) + le(4242, 4) + le(0, 4)
    )  # fmt: skip


def test_lookup_request_bytes() -> None:
    wire = in_header(44, 1, 0x1122334455667788, 1) + b"foo\0"
    expected = p.Request(c.Opcode.LOOKUP, 0x1122334455667788, 1, p.Name(b"foo"), 1000, 100, 4242)
    assert p.decode_request(wire) == expected
    assert p.encode_request(expected) == wire


def test_init_request_as_a_7_41_kernel_sends_it() -> None:
    flags = c.InitFlag.ASYNC_READ | c.InitFlag.MAP_ALIGNMENT | c.InitFlag.INIT_EXT
    flags2 = 1 << (33 - 32)  # FUSE_HAS_INODE_DAX travels in flags2
    body = le(7, 4) + le(41, 4) + le(131072, 4) + le(int(flags), 4) + le(flags2, 4) + bytes(44)
    request = p.decode_request(in_header(40 + 64, 26, 2, 0) + body)
    assert request.body == p.InitIn(7, 41, 131072, int(flags | c.InitFlag.HAS_INODE_DAX))


def test_init_request_before_7_36_has_no_flags2() -> None:
    body = le(7, 4) + le(31, 4) + le(65536, 4) + le(int(c.InitFlag.MAP_ALIGNMENT), 4)
    request = p.decode_request(in_header(40 + 16, 26, 2, 0) + body)
    assert request.body == p.InitIn(7, 31, 65536, int(c.InitFlag.MAP_ALIGNMENT))


def test_init_reply_layout() -> None:
    out = p.InitOut(
        7, 36, 131072, int(c.InitFlag.MAP_ALIGNMENT | c.InitFlag.HAS_INODE_DAX),
        max_background=16, congestion_threshold=12, max_write=1 << 20, time_gran=1,
        max_pages=256, map_alignment=12,
    )  # fmt: skip
    wire = p.encode_reply(9, out)
    assert len(wire) == 16 + 64
    body = wire[16:]
    assert body[12:16] == le(1 << 26, 4)  # flags
    assert body[16:18] == le(16, 2) and body[18:20] == le(12, 2)
    assert body[20:24] == le(1 << 20, 4)  # max_write
    assert body[28:30] == le(256, 2)  # max_pages
    assert body[30:32] == le(12, 2)  # map_alignment
    assert body[32:36] == le(1 << 1, 4)  # flags2
    assert body[36:] == bytes(28)


@pytest.mark.parametrize("size", [8, 24])
def test_init_reply_compat_sizes(size: int) -> None:
    body = (le(7, 4) + le(22, 4) + le(4096, 4) + le(1, 4) + le(3, 2) + le(4, 2) + le(5, 4))[:size]
    reply = p.decode_reply(le(16 + size, 4) + le(0, 4) + le(1, 8) + body, c.Opcode.INIT)
    assert reply.body.major == 7 and reply.body.minor == 22
    assert reply.body.max_write == (5 if size == 24 else 0)


ATTR = p.Attr(
    ino=11, size=4096, blocks=8, atime=1, mtime=2, ctime=3, atimensec=4, mtimensec=5,
    ctimensec=6, mode=0o100644, nlink=1, uid=1000, gid=100, rdev=0, blksize=4096,
)  # fmt: skip


def attr_bytes() -> bytes:
    return (
        le(11, 8) + le(4096, 8) + le(8, 8) + le(1, 8) + le(2, 8) + le(3, 8)
        + le(4, 4) + le(5, 4) + le(6, 4) + le(0o100644, 4) + le(1, 4) + le(1000, 4)
        + le(100, 4) + le(0, 4) + le(4096, 4) + le(0, 4)
    )  # fmt: skip


def test_fuse_attr_is_88_bytes() -> None:
    assert len(attr_bytes()) == 88


def test_entry_out_bytes() -> None:
    entry = p.EntryOut(5, 1, ATTR, entry_valid=0, attr_valid=0)
    body = le(5, 8) + le(1, 8) + le(0, 8) + le(0, 8) + le(0, 4) + le(0, 4) + attr_bytes()
    wire = le(16 + 128, 4) + le(0, 4) + le(3, 8) + body
    assert p.encode_reply(3, entry) == wire
    assert p.decode_reply(wire, c.Opcode.LOOKUP) == p.Reply(3, entry)


def test_attr_out_and_create_out_bytes() -> None:
    attr_out = le(0, 8) + le(0, 4) + le(0, 4) + attr_bytes()
    assert p.AttrOut(ATTR).encode() == attr_out and len(attr_out) == 104
    create = p.CreateOut(p.EntryOut(5, 1, ATTR), p.OpenOut(77, 0))
    assert create.encode()[128:] == le(77, 8) + le(0, 4) + le(0, 4)
    assert len(create.encode()) == 144


def test_statfs_out_is_80_bytes() -> None:
    out = p.StatfsOut(100, 50, 40, 1000, 900, 4096, 255, 4096)
    wire = (
        le(100, 8) + le(50, 8) + le(40, 8) + le(1000, 8) + le(900, 8)
        + le(4096, 4) + le(255, 4) + le(4096, 4) + bytes(4 + 24)
    )  # fmt: skip
    assert out.encode() == wire and len(wire) == 80


REQUEST_BODY_SIZES = [  # (body, size from fuse.h)
    (p.GetattrIn(1, 7), 16),
    (p.SetattrIn(8, size=10), 88),
    (p.OpenIn(2), 8),
    (p.ReadIn(7, 0, 4096), 40),
    (p.WriteIn(7, 0, b"abc"), 40 + 3),
    (p.ReleaseIn(7), 24),
    (p.FlushIn(7), 24),
    (p.FsyncIn(7, 1), 16),
    (p.ForgetIn(1), 8),
    (p.BatchForgetIn((p.ForgetOne(2, 1), p.ForgetOne(3, 1))), 8 + 2 * 16),
    (p.InterruptIn(9), 8),
    (p.SetupmappingIn(7, 0, 1 << 21, 3, 1 << 21), 40),
    (p.RemovemappingIn((p.RemovemappingOne(0, 1 << 21),)), 4 + 16),
    (p.MkdirIn(0o755, b"d"), 8 + 2),
    (p.CreateIn(0o1, 0o644, b"f"), 16 + 2),
    (p.RenameIn(1, b"a", b"b"), 8 + 4),
    (p.Rename2In(1, b"a", b"b", c.RENAME_NOREPLACE), 16 + 4),
    (p.SymlinkIn(b"link", b"target"), 5 + 7),
    (p.InitIn(7, 36), 64),
]


@pytest.mark.parametrize(("body", "size"), REQUEST_BODY_SIZES)
def test_request_body_sizes(body: p.RequestBody, size: int) -> None:
    assert len(body.encode()) == size


def test_setupmapping_field_offsets() -> None:
    wire = p.SetupmappingIn(fh=1, foffset=2, length=3, flags=2, moffset=5).encode()
    assert wire == le(1, 8) + le(2, 8) + le(3, 8) + le(2, 8) + le(5, 8)
    assert p.SetupmappingIn(1, 2, 3, c.FUSE_SETUPMAPPING_FLAG_WRITE, 5).writable


def test_removemapping_has_no_padding_after_count() -> None:
    body = p.RemovemappingIn((p.RemovemappingOne(1 << 21, 1 << 21),)).encode()
    assert body == le(1, 4) + le(1 << 21, 8) + le(1 << 21, 8)


def test_symlink_carries_name_then_target() -> None:
    assert p.SymlinkIn(b"link", b"/etc/passwd").encode() == b"link\0/etc/passwd\0"


def test_dirent_bytes_and_alignment() -> None:
    entries = (p.Dirent(11, 1, 4, b"."), p.Dirent(12, 2, 8, b"abcdefghi"))
    wire = p.Dirents(entries).encode()
    first = le(11, 8) + le(1, 8) + le(1, 4) + le(4, 4) + b"." + bytes(7)
    second = le(12, 8) + le(2, 8) + le(9, 4) + le(8, 4) + b"abcdefghi" + bytes(7)
    assert wire == first + second
    assert [p.dirent_size(n) for n in (1, 8, 9)] == [32, 32, 40]


def test_error_reply_bytes() -> None:
    assert p.encode_error(0x42, errno.ENOENT) == le(16, 4) + le(-2, 4) + le(0x42, 8)
    with pytest.raises(p.ProtocolError):
        p.encode_error(1, 0)


def test_virtio_fs_device_facts() -> None:
    assert VIRTIO_ID_FS == 26 and HIPRIO_QUEUE == 0
    assert HIPRIO_OPCODES == {c.Opcode.FORGET, c.Opcode.BATCH_FORGET, c.Opcode.INTERRUPT}
    assert request_queue(0) == 1 and request_queue(0, notification=True) == 2
    config = VirtioFsConfig("share", 2, 0)
    wire = config.encode()
    assert wire == b"share" + bytes(31) + le(2, 4) + le(0, 4) and len(wire) == 44
    assert VirtioFsConfig.decode(wire) == config
    full = VirtioFsConfig("t" * TAG_SIZE)  # fills the field: no terminating NUL
    assert VirtioFsConfig.decode(full.encode()) == full


@pytest.mark.parametrize(
    "raw",
    [bytes(36) + le(1, 4) + le(0, 4),  # empty tag
     b"a\0b" + bytes(33) + le(1, 4) + le(0, 4),  # not NUL-padded
     b"\xff" + bytes(35) + le(1, 4) + le(0, 4),  # not UTF-8
     b"a" + bytes(35) + le(0, 4) + le(0, 4),  # no request queue
     b"a" + bytes(35) + le(1, 4)],  # short
)  # fmt: skip
def test_bad_virtio_fs_config_is_refused(raw: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        VirtioFsConfig.decode(raw)


def test_init_reply_compat_sizes_are_fuse_h_s() -> None:
    assert replies._INIT_OUT_COMPAT.size == c.FUSE_COMPAT_INIT_OUT_SIZE
    assert replies._INIT_OUT_COMPAT_22.size == c.FUSE_COMPAT_22_INIT_OUT_SIZE


@pytest.mark.parametrize(
    ("opcode", "size"),
    [(c.Opcode.LOOKUP, c.FUSE_COMPAT_ENTRY_OUT_SIZE),
     (c.Opcode.GETATTR, c.FUSE_COMPAT_ATTR_OUT_SIZE),
     (c.Opcode.STATFS, c.FUSE_COMPAT_STATFS_SIZE)],
)  # fmt: skip
def test_pre_7_9_reply_layouts_are_refused(opcode: int, size: int) -> None:
    """They belong to protocols older than the 7.31 we require."""
    with pytest.raises(p.ProtocolError):
        p.decode_reply(le(16 + size, 4) + le(0, 4) + le(1, 8) + bytes(size), opcode)


def test_pre_7_9_write_in_is_refused() -> None:
    body = le(1, 8) + le(0, 8) + le(3, 4) + le(0, 4) + b"abc"  # 24-byte fuse_write_in
    assert len(body) == c.FUSE_COMPAT_WRITE_IN_SIZE + 3
    with pytest.raises(p.ProtocolError):
        p.decode_request(in_header(40 + len(body), c.Opcode.WRITE, 1, 2) + body)
