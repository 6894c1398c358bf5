"""The C fast path (fastpath.c) against the Python dispatcher, its reference: the same
request bytes give the same reply bytes and the same session effect (nodeids with their
lookup counts and generations, handles with their flags, the window book), and the same
SHMEM_MAP/_UNMAP requests carried out in a real front-end window (each donated
descriptor's file and access mode included), over generated request sequences,
malformed ones included. Two exports of the same directory, each with its own session
and its own window on a real backend channel: one served fast path first (the
dispatcher for what it hands back), the other by the dispatcher alone; each request
goes through both before the next."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagefs.impl.host import cache_policy
from pagefs.impl.host.credentials import Credentials
from pagefs.impl.host.dispatch import Dispatcher
from pagefs.impl.host.fastpath import FastPath
from pagefs.impl.host.passthrough import GuestSession, PassthroughFS
from pagefs.impl.protocol import constants as c
from pagefs.impl.transport.backend import BackendChannel
from pagefs.impl.transport.shmem_window import ShmemWindow
from pagefs.impl.transport.vhost_user import MMAP, U64, BackendRequest, Channel

HEADER = struct.Struct("<IIQQIIIHH")
MAX_OFFSET = (1 << 63) - 1
FAST_OPCODES = (c.Opcode.GETATTR, c.Opcode.LOOKUP, c.Opcode.FORGET, c.Opcode.BATCH_FORGET,
                c.Opcode.OPEN, c.Opcode.RELEASE, c.Opcode.FLUSH, c.Opcode.READ,
                c.Opcode.WRITE, c.Opcode.SETUPMAPPING, c.Opcode.REMOVEMAPPING)


WINDOW = 16 << 20
NO_FH = c.FUSE_SETUPMAPPING_NO_FH


class _Window:
    """A front-end's DAX window on the other end of a real backend channel: it carries
    out each SHMEM_MAP/_UNMAP in a real reserved window, answers as the front-end does,
    and keeps a log of what it carried out (each donated file's identity and access
    mode in place of its descriptor number)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.chan = BackendChannel(timeout=10)
        self.chan.attach(ours.detach())
        self.chan.negotiated(True)
        self.window = ShmemWindow(WINDOW)
        self.log: list[tuple[object, ...]] = []
        self._peer = Channel(theirs)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (msg := self._peer.recv()) is not None:
            try:
                _, fd_offset, shm_offset, length, flags = msg.unpack(MMAP)
                if msg.request == BackendRequest.SHMEM_MAP:
                    fd = msg.fds[0]
                    self.window.map(fd, fd_offset, shm_offset, length, bool(flags))
                    st = os.fstat(fd)
                    entry: tuple[object, ...] = (
                        "map", fd_offset, shm_offset, length, flags, (st.st_dev, st.st_ino),
                        fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE)
                else:
                    self.window.unmap(shm_offset, length)
                    entry = ("unmap", shm_offset, length)
                self.log.append(entry)
                status = 0
            except OSError as e:
                status = e.errno or errno.EIO
            finally:
                msg.close_fds()
            self._peer.reply(msg, U64.pack(status))

    def close(self) -> None:
        self.chan.attach(-1)  # the peer reads the end of the stream
        self._thread.join(10)
        self._peer.close()
        self.window.close()


class Pair(NamedTuple):
    fast: FastPath
    fast_dispatcher: Dispatcher
    fast_session: GuestSession
    reference: Dispatcher
    reference_session: GuestSession
    fast_window: _Window
    reference_window: _Window


def _populate(root: str) -> None:
    with open(os.path.join(root, "f"), "wb") as f:
        f.write(b"0123456789" * 100)
    os.mkdir(os.path.join(root, "d"))
    with open(os.path.join(root, "d", "g"), "wb") as f:
        f.write(b"g")
    os.link(os.path.join(root, "f"), os.path.join(root, "d", "hard"))
    os.symlink("f", os.path.join(root, "l"))
    os.mkfifo(os.path.join(root, "p"))
    with open(os.path.join(root, "private"), "wb") as f:
        f.write(b"root only")
    os.chmod(os.path.join(root, "private"), 0o600)


@contextmanager
def _pair(read_only: bool = False, fds_per_guest: int | None = None,
          writable_map_fds: bool = False) -> Iterator[Pair]:
    with tempfile.TemporaryDirectory() as root:
        _populate(root)
        exports = [PassthroughFS(root, read_only=read_only, fds_per_guest=fds_per_guest,
                                 writable_map_fds=writable_map_fds) for _ in range(2)]
        windows = [_Window(), _Window()]
        try:
            sessions = [fs.session() for fs in exports]
            credentials = Credentials()
            dispatchers = [Dispatcher(s, w.chan, cache_policy.DEFAULT, credentials)
                           for s, w in zip(sessions, windows, strict=True)]
            fast = FastPath(sessions[0].tables, cache=cache_policy.DEFAULT,
                            credentials=credentials, backend_channel=windows[0].chan.address,
                            map_sources=sessions[0].map_sources())
            dispatchers[0].gates.append(fast.gate)
            yield Pair(fast, dispatchers[0], sessions[0], dispatchers[1], sessions[1],
                       windows[0], windows[1])
        finally:
            for w in windows:
                w.close()
            for fs in exports:
                fs.close()


def _request(opcode: int, body: bytes, *, nodeid: int = 1, uid: int = 0, gid: int = 0,
             unique: int = 7, length: int | None = None, extlen: int = 0) -> bytes:
    size = HEADER.size + len(body) if length is None else length
    return HEADER.pack(size, opcode, unique, nodeid, uid, gid, 42, extlen, 0) + body


def _init() -> bytes:
    return _request(c.Opcode.INIT, struct.pack("<IIII", 7, 36, 0, 0) + bytes(48))


def _effect(session: GuestSession, window: _Window) -> tuple[object, ...]:
    """What the session holds, descriptor numbers aside (each export has its own), and
    what its front-end's window holds and carried out."""
    nodes = [session.tables.node(n) for n in range(1, 40)]
    handles = [session.tables.handle(h) for h in range(1, 40)]
    return (session.stats(),
            [n and (n.key, n.generation, n.nlookup, n.kind) for n in nodes],
            [h and (h.key, h.flags, h.is_dir) for h in handles],
            session.mappings, window.window.mappings(), window.log)


def _same_effect(pair: Pair) -> bool:
    return (_effect(pair.fast_session, pair.fast_window)
            == _effect(pair.reference_session, pair.reference_window))


def _both(pair: Pair, request: bytes) -> tuple[bytes, bytes, bool]:
    """Both replies as the wire carries them (no reply: nothing written), and whether the
    fast path took the request."""
    reply = pair.fast.serve_buffer(request)
    taken = reply is not None
    if not taken:
        reply = pair.fast_dispatcher.handle(request)
    return reply or b"", pair.reference.handle(request) or b"", taken


# -- generated requests -------------------------------------------------------------------

nodeids = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 99, (1 << 64) - 1])
handles = st.sampled_from([0, 1, 2, 3, 4, 5, 77, (1 << 64) - 1])
names = st.sampled_from([b"f", b"d", b"g", b"hard", b"l", b"p", b"private", b"nope", b".",
                         b"..", b"a/b", b"", b"x" * 256])
offsets = st.sampled_from([0, 1, 5, 999, 1000, 4096, MAX_OFFSET - 3, MAX_OFFSET,
                           MAX_OFFSET + 1, (1 << 64) - 1])
sizes = st.sampled_from([0, 1, 10, 4096, 1 << 20, (1 << 20) + 1])
open_flags = st.sampled_from([os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR | os.O_APPEND,
                              os.O_RDONLY | os.O_TRUNC, os.O_ACCMODE, os.O_RDWR | os.O_SYNC,
                              os.O_WRONLY | os.O_CREAT | os.O_EXCL])
page_offsets = st.sampled_from([0, 0, 4096, 8192, 1 << 20, WINDOW - 4096, WINDOW, 7,
                                MAX_OFFSET + 1 - 4096, (1 << 64) - 4096])
map_lengths = st.sampled_from([4096, 8192, 1 << 20, 0, 3, WINDOW, MAX_OFFSET + 1])
users = st.sampled_from([(0, 0), (1000, 1000), (0xFFFF_FFFF, 0), (0, 0xFFFF_FFFF)])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    opcode = draw(st.sampled_from(FAST_OPCODES + (c.Opcode.STATFS, c.Opcode.OPENDIR)))
    if opcode == c.Opcode.GETATTR:
        body = struct.pack("<IIQ", draw(st.sampled_from([0, 1, 2])), 0, draw(handles))
    elif opcode == c.Opcode.LOOKUP:
        body = draw(names) + b"\0"
    elif opcode == c.Opcode.FORGET:
        body = struct.pack("<Q", draw(st.sampled_from([0, 1, 2, 1 << 40])))
    elif opcode == c.Opcode.BATCH_FORGET:
        pairs = draw(st.lists(st.tuples(nodeids, st.sampled_from([1, 2, 5])), max_size=3))
        body = struct.pack("<II", len(pairs), 0) + b"".join(struct.pack("<QQ", *e)
                                                             for e in pairs)
    elif opcode in (c.Opcode.OPEN, c.Opcode.OPENDIR):
        body = struct.pack("<II", draw(open_flags), draw(st.sampled_from([0, 0, 1, 2])))
    elif opcode == c.Opcode.RELEASE:
        body = struct.pack("<QIIQ", draw(handles), 0, draw(st.sampled_from([0, 1, 2, 4])), 0)
    elif opcode == c.Opcode.FLUSH:
        body = struct.pack("<Q8xQ", draw(handles), 0)
    elif opcode == c.Opcode.READ:
        body = struct.pack("<QQIIQII", draw(handles), draw(offsets), draw(sizes),
                           draw(st.sampled_from([0, 2, 1])), 0, 0, 0)
    elif opcode == c.Opcode.WRITE:
        data = draw(st.binary(max_size=64))
        body = struct.pack("<QQIIQII", draw(handles), draw(offsets), len(data),
                           draw(st.sampled_from([0, 1, 2, 4, 8])), 0, 0, 0) + data
    elif opcode == c.Opcode.SETUPMAPPING:
        body = struct.pack("<QQQQQ", draw(st.sampled_from([1, 1, NO_FH, NO_FH, 0, 2, 77])),
                           draw(page_offsets), draw(map_lengths),
                           draw(st.sampled_from([2, 2, 3, 3, 0, 1, 4])), draw(page_offsets))
    elif opcode == c.Opcode.REMOVEMAPPING:
        entries = draw(st.lists(st.tuples(page_offsets, map_lengths), max_size=3))
        count = draw(st.sampled_from([len(entries)] * 5 + [0, 257]))
        body = struct.pack("<I", count) + b"".join(struct.pack("<QQ", *e) for e in entries)
    else:
        body = b""
    malformed = draw(st.sampled_from(["none"] * 6 + ["cut", "extra", "length", "extlen"]))
    if malformed == "cut" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif malformed == "extra":
        body += b"\0" * draw(st.integers(1, 9))
    uid, gid = draw(users)
    nodeid = draw(nodeids)
    length = None
    if malformed == "length":
        length = HEADER.size + len(body) + draw(st.sampled_from([-1, 1, 1000]))
    return _request(opcode, body, nodeid=nodeid, uid=uid, gid=gid,
                    unique=draw(st.integers(1, 1 << 20)), length=length,
                    extlen=1 if malformed == "extlen" else 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), max_size=25), st.booleans(), st.sampled_from([None, 4]))
def test_same_reply_and_same_session_effect(sequence: list[bytes], read_only: bool,
                                           fds_per_guest: int | None) -> None:
    # a file looked up (nodeid 2) and opened read-write (handle 1): mappings can succeed
    prelude = [_init(), _request(c.Opcode.LOOKUP, b"f\0"),
               _request(c.Opcode.OPEN, struct.pack("<II", os.O_RDWR, 0), nodeid=2)]
    with _pair(read_only, fds_per_guest) as pair:
        for request in prelude + sequence:
            fast_reply, reference_reply, _ = _both(pair, request)
            assert _steady(request, fast_reply) == _steady(request, reference_reply), request
            assert _same_effect(pair), request


# fuse_statfs_out after the 16-byte out header: blocks, bfree, bavail, files, ffree, ...
_STATFS_REPLY = 16 + 80
_STATFS_MOVING = ((16 + 8, 16 + 24), (16 + 32, 16 + 40))  # bfree+bavail, ffree


def _steady(request: bytes, reply: bytes) -> bytes:
    """The reply with STATFS's free counts zeroed: the two paths ask the host's disk one
    after the other, and anything else writing to it meanwhile changes those counts."""
    if struct.unpack_from("<I", request, 4)[0] != c.Opcode.STATFS or len(reply) != _STATFS_REPLY:
        return reply
    steady = bytearray(reply)
    for start, end in _STATFS_MOVING:
        steady[start:end] = bytes(end - start)
    return bytes(steady)


def test_the_fast_path_takes_the_common_requests() -> None:
    """The differential test would pass with a fast path that takes nothing: here it is
    shown to answer each of its opcodes itself."""
    with _pair() as pair:
        taken = {}
        lookup = _request(c.Opcode.LOOKUP, b"f\0")
        script = [
            ("lookup", lookup),
            ("getattr", _request(c.Opcode.GETATTR, struct.pack("<IIQ", 0, 0, 0), nodeid=2)),
            ("open", _request(c.Opcode.OPEN, struct.pack("<II", os.O_RDWR, 0), nodeid=2)),
            ("getattr fh", _request(c.Opcode.GETATTR, struct.pack("<IIQ", 1, 0, 1), nodeid=2)),
            ("write", _request(c.Opcode.WRITE, struct.pack("<QQIIQII", 1, 3, 2, 0, 0, 0, 0)
                               + b"ab")),
            ("read", _request(c.Opcode.READ, struct.pack("<QQIIQII", 1, 0, 8, 0, 0, 0, 0))),
            ("flush", _request(c.Opcode.FLUSH, struct.pack("<Q8xQ", 1, 0))),
            ("release", _request(c.Opcode.RELEASE, struct.pack("<QIIQ", 1, 0, 1, 0))),
            ("forget", _request(c.Opcode.FORGET, struct.pack("<Q", 1), nodeid=2)),
            ("batch forget", _request(c.Opcode.BATCH_FORGET, struct.pack("<IIQQ", 1, 0, 2, 1))),
        ]
        assert _both(pair, _init())[2] is False, "INIT is the dispatcher's"
        for name, request in script:
            fast_reply, reference_reply, taken[name] = _both(pair, request)
            assert fast_reply == reference_reply, name
        assert all(taken.values()), taken
        assert pair.fast.served == len(script)
        assert pair.fast_session.tables.node(2) is None, "the forgets dropped the nodeid"


def test_before_init_and_when_failing_the_dispatcher_answers() -> None:
    with _pair() as pair:
        getattr_root = _request(c.Opcode.GETATTR, struct.pack("<IIQ", 0, 0, 0))
        assert _both(pair, getattr_root)[2] is False, "before INIT: EIO is the dispatcher's"
        _both(pair, _init())
        assert _both(pair, getattr_root)[2] is True
        stale = _request(c.Opcode.GETATTR, struct.pack("<IIQ", 0, 0, 0), nodeid=9)
        assert _both(pair, stale)[2] is False, "ESTALE (and its log line) is the dispatcher's"
        _both(pair, _request(c.Opcode.DESTROY, b""))
        assert _both(pair, getattr_root)[2] is False, "after DESTROY: the dispatcher's again"


def _setupmapping(fh: int, foffset: int, length: int, flags: int, moffset: int,
                  nodeid: int = 2) -> bytes:
    return _request(c.Opcode.SETUPMAPPING, struct.pack("<QQQQQ", fh, foffset, length, flags,
                                                       moffset), nodeid=nodeid)


def _removemapping(*ranges: tuple[int, int]) -> bytes:
    return _request(c.Opcode.REMOVEMAPPING, struct.pack("<I", len(ranges)) + b"".join(
        struct.pack("<QQ", *r) for r in ranges), nodeid=0)


READ, WRITE = c.FUSE_SETUPMAPPING_FLAG_READ, c.FUSE_SETUPMAPPING_FLAG_WRITE


def test_the_fast_path_maps_and_unmaps_as_the_dispatcher() -> None:
    """SETUPMAPPING by handle and by nodeid, a remap from read-only to writable over part
    of a range (what it replaces whole is unmapped first), REMOVEMAPPING of several ranges
    in one request: all answered in C, with the same replies, books, windows and SHMEM
    requests (read mappings donated read-only, writable ones read-write) as the dispatcher."""
    with _pair() as pair:
        script = [
            ("open", _request(c.Opcode.OPEN, struct.pack("<II", os.O_RDWR, 0), nodeid=2)),
            ("map read by fh", _setupmapping(1, 0, 8192, READ, 0)),
            ("map read by node", _setupmapping(NO_FH, 4096, 4096, READ, 1 << 20)),
            ("remap writable", _setupmapping(1, 0, 4096, READ | WRITE, 4096)),
            ("replace whole", _setupmapping(NO_FH, 0, 8192, READ | WRITE, 1 << 20)),
            ("remove three", _removemapping((0, 4096), (4096, 4096), (1 << 20, 8192))),
        ]
        _both(pair, _init())
        _both(pair, _request(c.Opcode.LOOKUP, b"f\0"))
        served = pair.fast.served
        for name, request in script:
            fast_reply, reference_reply, taken = _both(pair, request)
            assert (fast_reply, taken) == (reference_reply, True), name
            assert _same_effect(pair), name
        assert pair.fast.served == served + len(script)
        log = pair.fast_window.log
        assert [e[0] for e in log] == ["map", "map", "map", "unmap", "map", "unmap", "unmap",
                                       "unmap"], log
        assert [e[-1] for e in log if e[0] == "map"] == [os.O_RDONLY, os.O_RDONLY, os.O_RDWR,
                                                         os.O_RDWR]
        assert pair.fast_window.window.mappings() == [] == pair.fast_session.mappings
        assert pair.fast_session.stats()["handles"] == 1, "by nodeid: no handle left"


def test_mapping_refusals_stay_the_dispatchers() -> None:
    """What the dispatcher refuses (a read-only export's writable mapping, a range not in
    whole pages, an unmapped REMOVEMAPPING) and what the front-end refuses (outside its
    window) are answered by the dispatcher, the same errno on both sides; nothing of a
    refused mapping stays in the book or the window."""
    with _pair(read_only=True) as pair:
        _both(pair, _init())
        _both(pair, _request(c.Opcode.LOOKUP, b"f\0"))
        _both(pair, _request(c.Opcode.OPEN, struct.pack("<II", os.O_RDONLY, 0), nodeid=2))
        for request, code in [
            (_setupmapping(1, 0, 4096, READ | WRITE, 0), errno.EROFS),
            (_setupmapping(1, 5, 4096, READ, 0), errno.EINVAL),
            (_setupmapping(1, 0, 4096, READ, WINDOW), errno.EINVAL),  # the front-end's no
            (_removemapping((0, 4096)), errno.EINVAL),
        ]:
            fast_reply, reference_reply, taken = _both(pair, request)
            assert fast_reply == reference_reply and not taken, request
            assert struct.unpack_from("<i", fast_reply, 4)[0] == -code
            assert _same_effect(pair)
        assert pair.fast_window.window.mappings() == [] == pair.fast_session.mappings
        assert _both(pair, _setupmapping(1, 0, 4096, READ, 0))[2], "and a good one is C's"
        assert pair.fast_window.log[-1][-1] == os.O_RDONLY
