"""Dispatch on a real export: request bytes in, reply bytes out, checked against the host.

Each test drives `Dispatcher.handle` with encoded FUSE requests against a real
PassthroughFS session on a temporary directory, and decodes what comes back.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagefs.impl import protocol as p
from pagefs.impl.host import cache_policy
from pagefs.impl.host.dispatch import Dispatcher, attr_from_stat
from pagefs.impl.host.passthrough import GuestSession, PassthroughFS
from pagefs.impl.protocol import constants as c
from pagefs.impl.protocol.codec import ERRNO_LIMIT, IN_HEADER, OUT_HEADER
from pagefs.impl.protocol.constants import MAX_TRANSFER
from pagefs.impl.transport.shmem_window import ShmemWindow

from ..protocol.test_codec_properties import REQUEST_BODIES

ROOT = c.FUSE_ROOT_ID
Op = c.Opcode
DAX_OFFER = c.InitFlag.MAP_ALIGNMENT | c.InitFlag.MAX_PAGES | c.InitFlag.ASYNC_READ


class WindowMapper:
    """The front-end's half of SHMEM_MAP/_UNMAP in this process: a real reserved window."""

    def __init__(self, size: int) -> None:
        self.window = ShmemWindow(size)

    def shmem_map(
        self, fd: int, fd_offset: int, shm_offset: int, length: int, writable: bool
    ) -> None:
        self.window.map(fd, fd_offset, shm_offset, length, writable)

    def shmem_unmap(self, ranges: list[tuple[int, int]]) -> None:
        self.window.unmap_each(ranges)


class Guest:
    """Encodes requests, hands them to the dispatcher, decodes its replies."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._unique = itertools.count(1)

    def send(self, opcode: int, nodeid: int, body: p.RequestBody) -> bytes | None:
        wire = p.encode_request(p.Request(Op(opcode), next(self._unique), nodeid, body))
        return self.dispatcher.handle(wire)

    def call(self, opcode: int, nodeid: int, body: p.RequestBody = p.EMPTY) -> p.Reply:
        unique = next(self._unique)
        wire = p.encode_request(p.Request(Op(opcode), unique, nodeid, body))
        reply = p.decode_reply(self.dispatcher.handle(wire), opcode)
        assert reply.unique == unique
        return reply

    def ok(self, opcode: int, nodeid: int, body: p.RequestBody = p.EMPTY):  # -> reply body
        reply = self.call(opcode, nodeid, body)
        assert reply.error == 0, errno.errorcode.get(reply.error, reply.error)
        return reply.body

    def fails(self, code: int, opcode: int, nodeid: int, body: p.RequestBody = p.EMPTY) -> None:
        got = self.call(opcode, nodeid, body).error
        assert got == code, f"{errno.errorcode.get(got, got)} instead of {errno.errorcode[code]}"

    def init(self, flags: int = DAX_OFFER, minor: int = 41) -> p.InitOut:
        return self.ok(Op.INIT, 0, p.InitIn(7, minor, 131072, int(flags)))

    def lookup(self, parent: int, name: bytes) -> p.EntryOut:
        return self.ok(Op.LOOKUP, parent, p.Name(name))

    def open(self, nodeid: int, flags: int) -> int:
        return self.ok(Op.OPEN, nodeid, p.OpenIn(flags)).fh


@pytest.fixture
def mapper() -> WindowMapper:
    window = WindowMapper(8 << 20)
    yield window
    window.window.close()


@pytest.fixture
def wire(guest: GuestSession, mapper: WindowMapper) -> Guest:
    return Guest(Dispatcher(guest, mapper))


@pytest.fixture
def ready(wire: Guest) -> Guest:
    wire.init()
    return wire


# -- INIT -----------------------------------------------------------------------------


def test_init_offers_dax_with_page_alignment(wire: Guest) -> None:
    out = wire.init(DAX_OFFER | c.InitFlag.INIT_EXT | c.InitFlag.HAS_INODE_DAX)
    assert (out.major, out.minor) == (7, c.FUSE_KERNEL_MINOR_VERSION)
    assert out.flags & c.InitFlag.MAP_ALIGNMENT and out.flags & c.InitFlag.MAX_PAGES
    assert 1 << out.map_alignment == os.sysconf("SC_PAGE_SIZE")
    assert out.max_write == MAX_TRANSFER and out.max_pages * os.sysconf("SC_PAGE_SIZE") == (
        MAX_TRANSFER
    )
    # Only what we asked for and the guest offered: nothing it did not offer, no flags2.
    assert not out.flags & ~int(DAX_OFFER) and out.flags >> 32 == 0


def test_init_without_dax_offer_has_no_alignment(wire: Guest) -> None:
    out = wire.init(c.InitFlag.ASYNC_READ, minor=31)
    assert out.minor == 31 and out.map_alignment == 0
    assert not out.flags & c.InitFlag.MAP_ALIGNMENT


def test_init_refuses_versions_before_dax(wire: Guest) -> None:
    wire.fails(errno.EPROTO, Op.INIT, 0, p.InitIn(7, 30))
    wire.fails(errno.EPROTO, Op.INIT, 0, p.InitIn(6, 40))
    wire.fails(errno.EIO, Op.GETATTR, ROOT, p.GetattrIn())


def test_init_with_a_newer_major_answers_ours_and_waits(wire: Guest) -> None:
    out = wire.ok(Op.INIT, 0, p.InitIn(8, 0))
    assert (out.major, out.minor) == (7, c.FUSE_KERNEL_MINOR_VERSION)
    wire.fails(errno.EIO, Op.GETATTR, ROOT, p.GetattrIn())
    wire.init()


def test_requests_before_init_fail_with_eio(wire: Guest, guest: GuestSession) -> None:
    wire.fails(errno.EIO, Op.LOOKUP, ROOT, p.Name(b"file"))
    assert wire.send(Op.FORGET, ROOT, p.ForgetIn(1)) is None
    assert guest.stats()["nodes"] == 1


def test_second_init_starts_a_new_session(wire: Guest, guest: GuestSession,
                                          mapper: WindowMapper, caplog) -> None:
    """A guest reset without unmount: INIT answered as the first was, the old session's
    handles, nodeids and window mappings released (the mapping through the mapper)."""
    ready, first = wire, wire.init()
    file_id = ready.lookup(ROOT, b"file").nodeid
    fh = ready.open(file_id, os.O_RDWR)
    ready.ok(Op.SETUPMAPPING, file_id, p.SetupmappingIn(fh, 0, 4096, 3, 0))
    assert mapper.window.mapped_bytes() == 4096
    with caplog.at_level(logging.INFO, "pagefs.host"):
        assert ready.init() == first
    assert mapper.window.mapped_bytes() == 0
    assert guest.stats() == {"nodes": 1, "handles": 0, "mappings": 0}
    ready.fails(errno.EBADF, Op.READ, file_id, p.ReadIn(fh, 0, 4))
    ready.fails(errno.ESTALE, Op.GETATTR, file_id, p.GetattrIn())
    assert [r.message for r in caplog.records if "new FUSE session" in r.message] == [
        "guest 1: new FUSE session after INIT on a live session (guest reset); "
        "released 1 nodeids, 1 handles, 1 mappings"
    ]
    assert ready.lookup(ROOT, b"file").nodeid != file_id


def test_destroy_then_init_again(ready: Guest) -> None:
    assert ready.ok(Op.DESTROY, 0) == p.EMPTY
    ready.fails(errno.EIO, Op.GETATTR, ROOT, p.GetattrIn())
    ready.init()
    ready.lookup(ROOT, b"file")


# -- malformed and unknown requests ---------------------------------------------------


def test_unknown_and_unserved_opcodes_get_enosys(ready: Guest, caplog) -> None:
    getlk = IN_HEADER.pack(IN_HEADER.size + 8, Op.GETLK, 99, ROOT, 0, 0, 0, 0) + bytes(8)
    with caplog.at_level(logging.INFO, "pagefs.host"):
        for _ in range(3):
            reply = p.decode_reply(ready.dispatcher.handle(getlk), Op.GETLK)
            assert (reply.unique, reply.error) == (99, errno.ENOSYS)
    assert len([r for r in caplog.records if "not served" in r.getMessage()]) == 1
    ready.fails(errno.ENOSYS, Op.FSYNCDIR, ROOT, p.FsyncIn(1))


def test_malformed_request_gets_einval_with_its_unique(ready: Guest) -> None:
    wire = p.encode_request(p.Request(Op.LOOKUP, 1234, ROOT, p.Name(b"file")))
    bad = wire[:4] + wire[4:-1] + b"x"  # the name lost its NUL
    reply = p.decode_reply(ready.dispatcher.handle(bad), Op.LOOKUP)
    assert (reply.unique, reply.error) == (1234, errno.EINVAL)
    short = IN_HEADER.pack(len(wire) + 1, Op.LOOKUP, 77, ROOT, 0, 0, 0, 0)
    assert p.decode_reply(ready.dispatcher.handle(short), Op.LOOKUP).error == errno.EINVAL


def test_headerless_garbage_and_malformed_forget_get_no_reply(ready: Guest) -> None:
    assert ready.dispatcher.handle(b"\x01\x02\x03") is None
    forget = p.encode_request(p.Request(Op.FORGET, 5, ROOT, p.ForgetIn(1)))
    assert ready.dispatcher.handle(forget[:4] + forget[4:-1]) is None
    ready.lookup(ROOT, b"file")  # and the dispatcher carries on


def test_oversized_read_is_refused(ready: Guest) -> None:
    fh = ready.open(ready.lookup(ROOT, b"file").nodeid, os.O_RDONLY)
    ready.fails(errno.EINVAL, Op.READ, ROOT, p.ReadIn(fh, 0, MAX_TRANSFER + 1))


# -- files ----------------------------------------------------------------------------


def test_lookup_attributes_are_the_hosts(ready: Guest, export: Path) -> None:
    entry = ready.lookup(ROOT, b"file")
    st = os.stat(export / "file")
    assert entry.nodeid > ROOT and entry.entry_valid == entry.attr_valid == 0
    attr = entry.attr
    assert (attr.ino, attr.size, attr.mode, attr.nlink) == (
        st.st_ino, st.st_size, st.st_mode, st.st_nlink)  # fmt: skip
    assert attr.mtime * 10**9 + attr.mtimensec == st.st_mtime_ns
    ready.fails(errno.ENOENT, Op.LOOKUP, ROOT, p.Name(b"missing"))


def test_attribute_replies_carry_every_field_of_the_hosts_stat(
    ready: Guest, export: Path
) -> None:
    os.utime(export / "file", ns=(-(10**9) + 3, 2 * 10**9 + 7))  # before 1970, and after
    nodeid = ready.lookup(ROOT, b"file").nodeid
    expected = attr_from_stat(os.stat(export / "file"))
    assert ready.lookup(ROOT, b"file").attr == expected
    assert ready.ok(Op.GETATTR, nodeid, p.GetattrIn()).attr == expected
    assert ready.ok(Op.SETATTR, nodeid, p.SetattrIn(0)).attr == expected


def test_read_write_and_size_follow_the_host(ready: Guest, export: Path) -> None:
    nodeid = ready.lookup(ROOT, b"file").nodeid
    fh = ready.open(nodeid, os.O_RDWR)
    assert ready.ok(Op.READ, nodeid, p.ReadIn(fh, 2, 5)).data == b"23456"
    assert ready.ok(Op.WRITE, nodeid, p.WriteIn(fh, 8, b"XYZ")).size == 3
    assert (export / "file").read_bytes() == b"01234567XYZ"
    (export / "file").write_bytes(b"host")  # COH-READ: the host's write shows at once
    assert ready.ok(Op.READ, nodeid, p.ReadIn(fh, 0, 100)).data == b"host"
    assert ready.ok(Op.GETATTR, nodeid, p.GetattrIn()).attr.size == 4
    assert ready.ok(Op.GETATTR, nodeid, p.GetattrIn(c.FUSE_GETATTR_FH, fh)).attr.size == 4
    assert ready.ok(Op.FLUSH, nodeid, p.FlushIn(fh)) == p.EMPTY
    assert ready.ok(Op.FSYNC, nodeid, p.FsyncIn(fh, c.FUSE_FSYNC_FDATASYNC)) == p.EMPTY
    assert ready.ok(Op.RELEASE, nodeid, p.ReleaseIn(fh, 0, c.FUSE_RELEASE_FLUSH)) == p.EMPTY
    ready.fails(errno.EBADF, Op.RELEASE, nodeid, p.ReleaseIn(fh))
    ready.fails(errno.EBADF, Op.READ, nodeid, p.ReadIn(fh, 0, 1))


@pytest.mark.parametrize(("mode", "open_flags", "timeout", "auto_inval"), [
    ("never", c.OpenReplyFlag.DIRECT_IO, 0, False),
    ("auto", 0, 0, True),
    ("always", c.OpenReplyFlag.KEEP_CACHE, cache_policy.TIMEOUT_ALWAYS, False),
])
def test_cache_modes_set_what_a_guest_kernel_may_keep(
    guest: GuestSession, mapper: WindowMapper, mode: str, open_flags: int, timeout: int,
    auto_inval: bool,
) -> None:
    """--cache: FOPEN flags of OPEN and CREATE, entry and attribute timeouts of every
    entry and attribute reply, and FUSE_AUTO_INVAL_DATA asked at INIT."""
    wire = Guest(Dispatcher(guest, mapper, cache_policy.CACHE_POLICIES[mode]))
    out = wire.init(DAX_OFFER | c.InitFlag.AUTO_INVAL_DATA)
    assert bool(out.flags & c.InitFlag.AUTO_INVAL_DATA) == auto_inval
    assert out.flags & c.InitFlag.MAP_ALIGNMENT  # DAX is offered in every mode
    entry = wire.lookup(ROOT, b"file")
    assert (entry.entry_valid, entry.attr_valid) == (timeout, timeout)
    assert wire.ok(Op.OPEN, entry.nodeid, p.OpenIn(os.O_RDONLY)).open_flags == open_flags
    assert wire.ok(Op.GETATTR, entry.nodeid, p.GetattrIn()).attr_valid == timeout
    setattr_out = wire.ok(Op.SETATTR, entry.nodeid, p.SetattrIn(c.SetattrValid.SIZE, size=3))
    assert setattr_out.attr_valid == timeout
    created = wire.ok(Op.CREATE, ROOT, p.CreateIn(os.O_RDWR, stat.S_IFREG | 0o644, b"c"))
    assert created.open.open_flags == open_flags
    assert (created.entry.entry_valid, created.entry.attr_valid) == (timeout, timeout)
    made = wire.ok(Op.MKDIR, ROOT, p.MkdirIn(0o755, b"d"))
    assert (made.entry_valid, made.attr_valid) == (timeout, timeout)
    assert wire.ok(Op.OPENDIR, ROOT, p.OpenIn(os.O_RDONLY)).open_flags == 0


def test_the_default_cache_mode_lets_a_guest_kernel_map_shared(ready: Guest) -> None:
    """No FOPEN_DIRECT_IO by default: Linux refuses MAP_SHARED on direct-I/O files."""
    nodeid = ready.lookup(ROOT, b"file").nodeid
    out = ready.ok(Op.OPEN, nodeid, p.OpenIn(os.O_RDWR))
    assert not out.open_flags & c.OpenReplyFlag.DIRECT_IO
    assert cache_policy.DEFAULT is cache_policy.AUTO


def test_setattr_size_mode_and_times(ready: Guest, export: Path) -> None:
    nodeid = ready.lookup(ROOT, b"file").nodeid
    valid = c.SetattrValid
    out = ready.ok(Op.SETATTR, nodeid, p.SetattrIn(valid.SIZE, size=3))
    assert out.attr.size == 3 and (export / "file").read_bytes() == b"012"
    out = ready.ok(Op.SETATTR, nodeid, p.SetattrIn(valid.MODE, mode=stat.S_IFREG | 0o600))
    assert stat.S_IMODE(os.stat(export / "file").st_mode) == 0o600 == stat.S_IMODE(out.attr.mode)
    times = p.SetattrIn(valid.ATIME | valid.MTIME, atime=1000, atimensec=5, mtime=2000,
                        mtimensec=7)  # fmt: skip
    ready.ok(Op.SETATTR, nodeid, times)
    st = os.stat(export / "file")
    assert (st.st_atime_ns, st.st_mtime_ns) == (1000 * 10**9 + 5, 2000 * 10**9 + 7)
    before_1970 = p.SetattrIn(valid.MTIME, mtime=(1 << 64) - 1, mtimensec=0)
    assert ready.ok(Op.SETATTR, nodeid, before_1970).attr.mtime == (1 << 64) - 1
    assert os.stat(export / "file").st_mtime_ns == -(10**9)
    ready.ok(Op.SETATTR, nodeid, p.SetattrIn(valid.MTIME | valid.MTIME_NOW))
    assert os.stat(export / "file").st_mtime_ns > 2000 * 10**9
    ready.fails(errno.EPERM, Op.SETATTR, nodeid, p.SetattrIn(valid.UID, uid=1))
    # a chown to the owner it has is no change (tar and cp -p as root): served
    owner = os.stat(export / "file")
    same = p.SetattrIn(valid.UID | valid.GID, uid=owner.st_uid, gid=owner.st_gid)
    assert ready.ok(Op.SETATTR, nodeid, same).attr.uid == owner.st_uid
    ready.fails(errno.EPERM, Op.SETATTR, nodeid,
                p.SetattrIn(valid.UID | valid.GID, uid=owner.st_uid, gid=owner.st_gid + 1))


# -- names ----------------------------------------------------------------------------


def test_namespace_requests_change_the_host_tree(ready: Guest, export: Path) -> None:
    d = ready.ok(Op.MKDIR, ROOT, p.MkdirIn(0o755, b"new")).nodeid
    assert (export / "new").is_dir()
    created = ready.ok(Op.CREATE, d, p.CreateIn(os.O_RDWR, stat.S_IFREG | 0o644, b"f"))
    ready.ok(Op.WRITE, created.entry.nodeid, p.WriteIn(created.open.fh, 0, b"made"))
    assert (export / "new" / "f").read_bytes() == b"made"
    ready.ok(Op.RELEASE, created.entry.nodeid, p.ReleaseIn(created.open.fh))
    link = ready.ok(Op.SYMLINK, d, p.SymlinkIn(b"l", b"f"))
    assert os.readlink(export / "new" / "l") == "f"
    assert ready.ok(Op.READLINK, link.nodeid).data == b"f"
    ready.ok(Op.RENAME, d, p.RenameIn(ROOT, b"f", b"moved"))
    assert (export / "moved").read_bytes() == b"made"
    ready.fails(errno.EEXIST, Op.RENAME2, ROOT,
                p.Rename2In(ROOT, b"moved", b"file", c.RENAME_NOREPLACE))  # fmt: skip
    ready.fails(errno.ENOTEMPTY, Op.RMDIR, ROOT, p.Name(b"new"))
    ready.ok(Op.UNLINK, d, p.Name(b"l"))
    ready.ok(Op.RMDIR, ROOT, p.Name(b"new"))
    ready.ok(Op.UNLINK, ROOT, p.Name(b"moved"))
    assert sorted(os.listdir(export)) == ["dir", "file"]
    ready.fails(errno.ENOENT, Op.UNLINK, ROOT, p.Name(b"moved"))


def test_readdir_lists_the_host_directory_across_small_buffers(
    ready: Guest, export: Path
) -> None:
    for i in range(20):
        (export / f"entry-{i:02d}-with-a-longer-name").write_bytes(b"")
    fh = ready.ok(Op.OPENDIR, ROOT, p.OpenIn(os.O_RDONLY)).fh
    whole = ready.ok(Op.READDIR, ROOT, p.ReadIn(fh, 0, 4096)).entries
    assert sorted(e.name.decode() for e in whole) == sorted([".", "..", *os.listdir(export)])
    paged, offset = [], 0
    while batch := ready.ok(Op.READDIR, ROOT, p.ReadIn(fh, offset, 120)).entries:
        assert sum(p.dirent_size(len(e.name)) for e in batch) <= 120
        paged += batch
        offset = batch[-1].off
    assert paged == list(whole)
    ready.fails(errno.EINVAL, Op.READDIR, ROOT, p.ReadIn(fh, 0, 8))
    ready.ok(Op.RELEASEDIR, ROOT, p.ReleaseIn(fh))
    ready.fails(errno.EBADF, Op.READDIR, ROOT, p.ReadIn(fh, 0, 4096))


def test_statfs_is_the_hosts(ready: Guest, export: Path) -> None:
    out = ready.ok(Op.STATFS, ROOT)
    host = os.statvfs(export)
    assert (out.bsize, out.frsize, out.namelen, out.blocks) == (
        host.f_bsize, host.f_frsize, host.f_namemax, host.f_blocks)  # fmt: skip


def test_forget_and_batch_forget_take_no_reply(ready: Guest, guest: GuestSession) -> None:
    a = ready.lookup(ROOT, b"file").nodeid
    b = ready.lookup(ROOT, b"dir").nodeid
    assert guest.stats()["nodes"] == 3
    assert ready.send(Op.FORGET, a, p.ForgetIn(1)) is None
    assert guest.stats()["nodes"] == 2
    batch = p.BatchForgetIn((p.ForgetOne(a, 1), p.ForgetOne(b, 1)))  # `a` is already gone
    assert ready.send(Op.BATCH_FORGET, 0, batch) is None
    assert guest.stats()["nodes"] == 1
    assert ready.send(Op.INTERRUPT, 0, p.InterruptIn(1)) is None


def test_a_closed_session_answers_with_its_errno(ready: Guest, guest: GuestSession) -> None:
    guest.close()
    ready.fails(errno.ENOTCONN, Op.LOOKUP, ROOT, p.Name(b"file"))


class _Faulty:
    """Fault injection: the real session, except that READLINK hits a bug."""

    def __init__(self, session: GuestSession) -> None:
        self._session = session

    def __getattr__(self, name: str):
        return getattr(self._session, name)

    def readlink(self, nodeid: int) -> bytes:
        raise ZeroDivisionError("a bug in the filesystem layer")


def test_an_unexpected_exception_becomes_eio_and_a_log_line(
    guest: GuestSession, mapper: WindowMapper, caplog
) -> None:
    faulty = Guest(Dispatcher(_Faulty(guest), mapper))
    faulty.init()
    with caplog.at_level(logging.ERROR, "pagefs.host"):
        faulty.fails(errno.EIO, Op.READLINK, ROOT)
    assert any("READLINK failed" in r.getMessage() for r in caplog.records)
    faulty.lookup(ROOT, b"file")


# -- nothing escapes, whatever arrives ------------------------------------------------


def _fuzz_guest(root: Path) -> tuple[PassthroughFS, Guest]:
    (root / "file").write_bytes(b"0123456789")
    (root / "dir").mkdir(exist_ok=True)
    fs = PassthroughFS(str(root))
    guest = Guest(Dispatcher(fs.session(), WindowMapper(4 << 20)))
    return fs, guest


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(sorted(REQUEST_BODIES)), st.integers(0, 6), st.data()),
            st.binary(max_size=120),
        ),
        max_size=12,
    ),
)
def test_any_request_sequence_gets_a_reply_or_none_and_never_raises(
    tmp_path_factory: pytest.TempPathFactory, steps: list
) -> None:
    fs, guest = _fuzz_guest(tmp_path_factory.mktemp("fuzz"))
    try:
        guest.init()
        for step in steps:
            if isinstance(step, bytes):
                reply = guest.dispatcher.handle(step)
                if reply is not None:  # a well-formed header with an errno or a body
                    length, error, _ = OUT_HEADER.unpack_from(reply)
                    assert length == len(reply) and -ERRNO_LIMIT < error <= 0
                continue
            opcode, nodeid, data = step
            body = data.draw(REQUEST_BODIES[opcode])
            reply = guest.send(opcode, nodeid, body)
            if p.expects_reply(opcode):
                p.decode_reply(reply, opcode)  # well-formed for its opcode
            else:
                assert reply is None
    finally:
        guest.dispatcher.session.close()
        guest.dispatcher.mapper.window.close()
        fs.close()


def test_the_daemon_serves_the_cache_modes_the_spec_states() -> None:
    from pagefs.spec import caching

    assert tuple(cache_policy.CACHE_POLICIES) == caching.CACHE_MODES
    for mode in caching.CACHE_MODES:
        assert caching.staleness(mode)
