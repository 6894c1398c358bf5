"""The C fast path (fastpath.c) against the Python dispatcher, its reference: the same
request bytes give the same reply bytes and the same session effect (nodeids with their
lookup counts and generations, handles with their flags), over generated request
sequences, malformed ones included. Two exports of the same directory, each with its
own session: one served fast path first (the dispatcher for what it hands back), the
other by the dispatcher alone; each request goes through both before the next."""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagefs.impl.host import cache_policy
from pagefs.impl.host.credentials import Credentials
from pagefs.impl.host.dispatch import Dispatcher
from pagefs.impl.host.fastpath import FastPath
from pagefs.impl.host.passthrough import GuestSession, PassthroughFS
from pagefs.impl.protocol import constants as c

HEADER = struct.Struct("<IIQQIIIHH")
MAX_OFFSET = (1 << 63) - 1
FAST_OPCODES = (c.Opcode.GETATTR, c.Opcode.LOOKUP, c.Opcode.FORGET, c.Opcode.BATCH_FORGET,
                c.Opcode.OPEN, c.Opcode.RELEASE, c.Opcode.FLUSH, c.Opcode.READ,
                c.Opcode.WRITE)


class _NoWindow:
    def shmem_map(self, fd: int, fd_offset: int, shm_offset: int, length: int,
                  writable: bool) -> None:
        raise OSError(95, "no window here")

    def shmem_unmap(self, ranges: list[tuple[int, int]]) -> None:
        raise OSError(95, "no window here")


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
          ) -> Iterator[tuple[FastPath, Dispatcher, GuestSession, Dispatcher, GuestSession]]:
    with tempfile.TemporaryDirectory() as root:
        _populate(root)
        exports = [PassthroughFS(root, read_only=read_only, fds_per_guest=fds_per_guest)
                   for _ in range(2)]
        try:
            sessions = [fs.session() for fs in exports]
            credentials = Credentials()
            dispatchers = [Dispatcher(s, _NoWindow(), cache_policy.DEFAULT, credentials)
                           for s in sessions]
            fast = FastPath(sessions[0].tables, cache=cache_policy.DEFAULT,
                            credentials=credentials)
            dispatchers[0].gates.append(fast.gate)
            yield fast, dispatchers[0], sessions[0], dispatchers[1], sessions[1]
        finally:
            for fs in exports:
                fs.close()


def _request(opcode: int, body: bytes, *, nodeid: int = 1, uid: int = 0, gid: int = 0,
             unique: int = 7, length: int | None = None, extlen: int = 0) -> bytes:
    size = HEADER.size + len(body) if length is None else length
    return HEADER.pack(size, opcode, unique, nodeid, uid, gid, 42, extlen, 0) + body


def _init() -> bytes:
    return _request(c.Opcode.INIT, struct.pack("<IIII", 7, 36, 0, 0) + bytes(48))


def _effect(session: GuestSession) -> tuple[object, ...]:
    """What the session holds, descriptor numbers aside (each export has its own)."""
    nodes = [session.tables.node(n) for n in range(1, 40)]
    handles = [session.tables.handle(h) for h in range(1, 40)]
    return (session.stats(),
            [n and (n.key, n.generation, n.nlookup, n.kind) for n in nodes],
            [h and (h.key, h.flags, h.is_dir) for h in handles])


def _both(pair: tuple, request: bytes) -> tuple[bytes, bytes, bool]:
    """Both replies as the wire carries them (no reply: nothing written), and whether the
    fast path took the request."""
    fast, fast_dispatcher, _, reference, _ = pair
    reply = fast.serve_buffer(request)
    taken = reply is not None
    if not taken:
        reply = fast_dispatcher.handle(request)
    return reply or b"", reference.handle(request) or b"", taken


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
    with _pair(read_only, fds_per_guest) as pair:
        for request in [_init()] + sequence:
            fast_reply, reference_reply, _ = _both(pair, request)
            assert _steady(request, fast_reply) == _steady(request, reference_reply), request
            assert _effect(pair[2]) == _effect(pair[4]), request


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
        assert pair[0].served == len(script)
        assert pair[2].tables.node(2) is None, "the forgets dropped the nodeid"


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
