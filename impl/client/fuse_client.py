"""The guest's FUSE client: typed FUSE requests over a vhost-user front-end.

Requests go on the request queue (FORGET and BATCH_FORGET on hiprio) with room for the
largest reply their opcode can have; replies are decoded with `impl.protocol` and
checked against the request they answer. `submit` returns a Future, so any number of
requests may be in flight from any number of threads; the typed methods wait for theirs,
each in one round trip of the front-end's C path, the hot ones (GETATTR, LOOKUP, OPEN,
RELEASE, FLUSH, READ, WRITE, CREATE, UNLINK) encoded and decoded in one struct call each
way (`impl.protocol.hot`), their replies parsed in the front-end's reply buffer.
FORGET and BATCH_FORGET have no reply in FUSE: they are queued and not waited for
(`settle` waits until the back-end has taken them).
An error reply raises OSError(errno); a back-end that goes away raises ConnectionError.

Requests have no deadline by default: a slow FSYNC or a large WRITE is still in flight,
not failed, and waiting ends with its reply or with the connection's death. A caller
that wants a bound passes `timeout` (client-wide, or per `call`): OSError(ETIMEDOUT)
then, while the request stays in flight and its late reply is dropped.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from pagefs.impl import protocol as p
from pagefs.impl.protocol import hot
from pagefs.impl.protocol.constants import (
    FUSE_FSYNC_FDATASYNC,
    FUSE_GETATTR_FH,
    FUSE_KERNEL_MINOR_VERSION,
    FUSE_KERNEL_VERSION,
    FUSE_ROOT_ID,
    FUSE_SETUPMAPPING_FLAG_READ,
    FUSE_SETUPMAPPING_FLAG_WRITE,
    MAX_TRANSFER,
)
from pagefs.impl.protocol.virtio_fs import HIPRIO_OPCODES, HIPRIO_QUEUE, request_queue
from pagefs.impl.transport.frontend import VhostUserFrontend
from pagefs.impl.transport.shmem_window import ShmemWindow

OUT_HEADER_SIZE = 16
DEFAULT_REPLY_ROOM = 4096  # more than any fixed-size reply body (fuse_create_out is 144)
PATH_MAX = 4096
INIT_FLAGS = (
    p.InitFlag.ASYNC_READ | p.InitFlag.BIG_WRITES | p.InitFlag.MAX_PAGES
    | p.InitFlag.MAP_ALIGNMENT
)  # fmt: skip
DEFAULT_TIMEOUT: float | None = None  # wait for the reply or the connection's end
XATTR_ROOM = 65536  # XATTR_SIZE_MAX: any value or name list fits
Reply = TypeVar("Reply")
_REQUESTS = request_queue(0)
_ROOM = OUT_HEADER_SIZE + DEFAULT_REPLY_ROOM


class FuseClient:
    """FUSE session over `frontend` (which it owns: `close()` closes it)."""

    def __init__(
        self, frontend: VhostUserFrontend, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        self.frontend = frontend
        self.timeout = timeout
        self.init_out: p.InitOut | None = None
        self._unique = itertools.count(1)
        self._ids = (os.getuid(), os.getgid(), os.getpid())  # fuse_in_header uid, gid, pid
        self.umask = 0  # the umask of the guest process whose requests this client sends
        self._forgets: list[Future[Any]] = []  # FORGETs the back-end may not have taken yet
        self._round_trip = frontend.request_path.call  # the hot path's one call
        self._send = frontend.request_path.send  # and FORGET's
        self._expecting_backend = frontend.request_path.expecting_backend

    @classmethod
    def connect(
        cls, socket_path: str, *, timeout: float | None = DEFAULT_TIMEOUT, **options: Any
    ) -> FuseClient:
        """Connects a front-end (`options` go to VhostUserFrontend.connect) and sends INIT."""
        client = cls(VhostUserFrontend.connect(socket_path, **options), timeout=timeout)
        try:
            client.init()
        except BaseException:
            client.close()
            raise
        return client

    # ---- session -----------------------------------------------------------------

    def init(self, flags: int = INIT_FLAGS) -> p.InitOut:
        out = self._expect(
            p.InitOut,
            p.Opcode.INIT,
            0,
            p.InitIn(FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR_VERSION, MAX_TRANSFER, flags),
        )
        if out.major != FUSE_KERNEL_VERSION:
            raise OSError(errno.EPROTO, f"back-end speaks FUSE {out.major}.{out.minor}")
        self.init_out = out
        return out

    def destroy(self) -> None:
        """Ends the FUSE session (what a guest's unmount sends); `init()` starts another."""
        self.call(p.Opcode.DESTROY, 0, p.EMPTY)
        self.init_out = None

    @property
    def map_alignment(self) -> int | None:
        """log2 of the DAX mapping alignment, or None when the back-end offers no DAX."""
        out = self.init_out
        if out is None or not out.flags & p.InitFlag.MAP_ALIGNMENT:
            return None
        return out.map_alignment

    @property
    def max_write(self) -> int:
        return min(MAX_TRANSFER, self.init_out.max_write) if self.init_out else 4096

    @property
    def window(self) -> ShmemWindow | None:
        """The DAX window, or None when the back-end gave none."""
        return self.frontend.window

    def close(self) -> None:
        self.frontend.close()

    def __enter__(self) -> FuseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _masked(self, mode: int) -> int:
        """A new inode's mode as Linux's FUSE sends it: the umask is applied by the guest
        kernel unless the server negotiated FUSE_DONT_MASK (then the server applies the
        umask the request carries, as it does in any case here)."""
        out = self.init_out
        if out is not None and out.flags & p.InitFlag.DONT_MASK:
            return mode
        return mode & ~self.umask

    def act_as(self, uid: int, gid: int, umask: int = 0) -> None:
        """From now on requests name (uid, gid) in their header and carry `umask`: the
        guest kernel's user and umask for all that follows."""
        self._ids = (uid, gid, self._ids[2])
        self.umask = umask

    @contextmanager
    def acting_as(self, uid: int, gid: int) -> Iterator[None]:
        """Requests sent in the block name (uid, gid) in their header, as a guest kernel's
        do for each of its users, instead of this process's own ids."""
        saved = self._ids
        self._ids = (uid, gid, saved[2])
        try:
            yield
        finally:
            self._ids = saved

    # ---- requests ----------------------------------------------------------------

    def submit(
        self, opcode: p.Opcode, nodeid: int, body: p.RequestBody, *, reply_room: int | None = None,
        caller: tuple[int, int, int] | None = None,
    ) -> Future[p.ReplyBody | None]:
        """Sends one request; the Future yields the reply body (None for no-reply opcodes)
        or raises OSError(errno) / ConnectionError. `caller` (uid, gid, pid) stands in the
        header for this process's own, when relaying another's request."""
        return self.frontend.submit(*self._chain(opcode, nodeid, body, reply_room, caller))

    def call(
        self,
        opcode: p.Opcode,
        nodeid: int,
        body: p.RequestBody,
        *,
        reply_room: int | None = None,
        timeout: float | None = None,
    ) -> p.ReplyBody | None:
        """`submit` and wait for the reply body (this thread reaps the reply itself).
        `timeout` (else the client's, else none): OSError(ETIMEDOUT) when it passes."""
        chain = self._chain(opcode, nodeid, body, reply_room, None)
        limit = self.timeout if timeout is None else timeout
        try:
            return self.frontend.call(*chain, timeout=limit)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, f"{opcode.name}: no reply within {limit} s") from None

    def _expect(self, reply: type[Reply], opcode: p.Opcode, nodeid: int, body: p.RequestBody,
                *, reply_room: int | None = None) -> Reply:
        """`call`, for a reply of the layout `reply` (the codec's for this opcode)."""
        out = self.call(opcode, nodeid, body, reply_room=reply_room)
        if not isinstance(out, reply):
            raise OSError(errno.EPROTO, f"{opcode.name}: a {type(out).__name__} reply "
                                        f"where {reply.__name__} belongs")
        return out

    def _hot(self, reply: type[Reply], opcode: p.Opcode, request: bytes, unique: int,
             parse: hot.HotParser, room: int = _ROOM) -> Reply:
        """One round trip of a request encoded by `hot`: its plain successful reply is
        parsed by `parse` straight from the front-end's reply buffer; anything else comes
        back as bytes for the generic decoder (errors, malformed or misdirected replies)."""
        try:
            out = self._round_trip(_REQUESTS, request, room, parse, unique, self.timeout)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT,
                          f"{opcode.name}: no reply within {self.timeout} s") from None
        if isinstance(out, reply):
            return out
        if isinstance(out, bytes):  # declined by `parse`: the generic decoder judges it
            out = _decode(out, opcode, unique, True)
        if not isinstance(out, reply):
            raise OSError(errno.EPROTO, f"{opcode.name}: a {type(out).__name__} reply "
                                        f"where {reply.__name__} belongs")
        return out

    def _chain(
        self, opcode: p.Opcode, nodeid: int, body: p.RequestBody, reply_room: int | None,
        caller: tuple[int, int, int] | None,
    ) -> tuple[int, bytes, int, Callable[[bytes], p.ReplyBody | None]]:
        """The queue, request bytes, reply room and reply decoder of one request."""
        unique = next(self._unique)
        ids = caller or self._ids
        request = p.encode_request(p.Request(opcode, unique, nodeid, body, *ids))
        wants_reply = p.expects_reply(opcode)
        queue = HIPRIO_QUEUE if opcode in HIPRIO_OPCODES else request_queue(0)
        room = OUT_HEADER_SIZE + (reply_room or DEFAULT_REPLY_ROOM) if wants_reply else 0

        def decode(data: bytes) -> p.ReplyBody | None:
            return _decode(data, opcode, unique, wants_reply)

        return queue, request, room, decode

    # ---- typed requests ----------------------------------------------------------

    def lookup(self, parent: int, name: bytes) -> p.EntryOut:
        unique = next(self._unique)
        request = hot.encode_name(p.Opcode.LOOKUP, unique, parent, self._ids, name)
        return self._hot(p.EntryOut, p.Opcode.LOOKUP, request, unique, hot.parse_entry)

    def forget(self, nodeid: int, nlookup: int) -> None:
        """Queues a FORGET and returns: FUSE gives it no reply, so nothing is waited for.
        Its buffer is recycled once the back-end has taken it (`settle` waits for that)."""
        request = hot.FORGET.encode(next(self._unique), nodeid, self._ids, nlookup)
        if not self._send(HIPRIO_QUEUE, request):  # larger than a slot: submitted instead
            self._forgotten(self.frontend.send(HIPRIO_QUEUE, request))

    def batch_forget(self, entries: list[tuple[int, int]]) -> None:
        """`forget` for many nodeids in one message."""
        body = p.BatchForgetIn(tuple(p.ForgetOne(n, k) for n, k in entries))
        request = p.encode_request(p.Request(p.Opcode.BATCH_FORGET, next(self._unique), 0, body,
                                             *self._ids))
        self._forgotten(self.frontend.send(HIPRIO_QUEUE, request))

    def _forgotten(self, taken: Future[Any] | None) -> None:
        if taken is not None:  # too large for a slot: submitted, with a Future
            self._forgets = [f for f in self._forgets if not f.done()]
            self._forgets.append(taken)

    def settle(self, timeout: float | None = None) -> None:
        """Returns once the back-end has taken every FORGET sent so far (the device has
        used their chains). A guest need not wait for it; a test that asks about a nodeid
        right after forgetting it does, since the back-end serves the hiprio queue on its
        own schedule."""
        try:
            self.frontend.drain(HIPRIO_QUEUE, timeout)
            for taken in self._forgets:
                taken.result(timeout)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, f"FORGET not taken within {timeout} s") from None
        self._forgets = []

    def getattr(self, nodeid: int, fh: int | None = None) -> p.AttrOut:
        unique = next(self._unique)
        flags = FUSE_GETATTR_FH if fh is not None else 0
        request = hot.GETATTR.encode(unique, nodeid, self._ids, flags, fh or 0)
        return self._hot(p.AttrOut, p.Opcode.GETATTR, request, unique, hot.parse_attr)

    def setattr(
        self,
        nodeid: int,
        fh: int | None = None,
        *,
        size: int | None = None,
        mode: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
    ) -> p.AttrOut:
        v = p.SetattrValid
        valid = 0
        fields: dict[str, int] = {}
        if fh is not None:
            valid |= v.FH
            fields["fh"] = fh
        if size is not None:
            valid |= v.SIZE
            fields["size"] = size
        if mode is not None:
            valid |= v.MODE
            fields["mode"] = mode
        if atime_ns is not None:
            valid |= v.ATIME
            fields["atime"], fields["atimensec"] = divmod(atime_ns, 10**9)
        if mtime_ns is not None:
            valid |= v.MTIME
            fields["mtime"], fields["mtimensec"] = divmod(mtime_ns, 10**9)
        return self._expect(p.AttrOut, p.Opcode.SETATTR, nodeid, p.SetattrIn(valid, **fields))

    def readlink(self, nodeid: int) -> bytes:
        return self._expect(p.Data, p.Opcode.READLINK, nodeid, p.EMPTY, reply_room=PATH_MAX).data

    def symlink(self, parent: int, name: bytes, target: bytes) -> p.EntryOut:
        return self._expect(p.EntryOut, p.Opcode.SYMLINK, parent, p.SymlinkIn(name, target))

    def mkdir(self, parent: int, name: bytes, mode: int = 0o755) -> p.EntryOut:
        return self._expect(p.EntryOut, p.Opcode.MKDIR, parent,
                            p.MkdirIn(self._masked(mode), name, self.umask))

    def unlink(self, parent: int, name: bytes) -> None:
        unique = next(self._unique)
        request = hot.encode_name(p.Opcode.UNLINK, unique, parent, self._ids, name)
        self._hot(p.Empty, p.Opcode.UNLINK, request, unique, hot.parse_empty)

    def rmdir(self, parent: int, name: bytes) -> None:
        self.call(p.Opcode.RMDIR, parent, p.Name(name))

    def rename(
        self, parent: int, name: bytes, newparent: int, newname: bytes, flags: int = 0
    ) -> None:
        if flags:
            self.call(p.Opcode.RENAME2, parent, p.Rename2In(newparent, name, newname, flags))
        else:
            self.call(p.Opcode.RENAME, parent, p.RenameIn(newparent, name, newname))

    def open(self, nodeid: int, flags: int) -> p.OpenOut:
        unique = next(self._unique)
        request = hot.OPEN.encode(unique, nodeid, self._ids, flags, 0)
        return self._hot(p.OpenOut, p.Opcode.OPEN, request, unique, hot.parse_open)

    def create(self, parent: int, name: bytes, flags: int, mode: int = 0o644) -> p.CreateOut:
        unique = next(self._unique)
        request = hot.encode_create(unique, parent, self._ids, flags, self._masked(mode),
                                    self.umask, name)
        return self._hot(p.CreateOut, p.Opcode.CREATE, request, unique, hot.parse_create)

    def read(self, nodeid: int, fh: int, offset: int, size: int) -> bytes:
        size = min(size, MAX_TRANSFER)
        unique = next(self._unique)
        request = hot.READ.encode(unique, nodeid, self._ids, fh, offset, size, 0, 0, 0)
        return self._hot(p.Data, p.Opcode.READ, request, unique, hot.parse_data,
                         OUT_HEADER_SIZE + (size or DEFAULT_REPLY_ROOM)).data

    def write(self, nodeid: int, fh: int, offset: int, data: bytes) -> int:
        unique = next(self._unique)
        request = hot.encode_write(unique, nodeid, self._ids, fh, offset, bytes(data))
        return self._hot(p.WriteOut, p.Opcode.WRITE, request, unique, hot.parse_write).size

    def flush(self, nodeid: int, fh: int) -> None:
        unique = next(self._unique)
        request = hot.FLUSH.encode(unique, nodeid, self._ids, fh, 0)
        self._hot(p.Empty, p.Opcode.FLUSH, request, unique, hot.parse_empty)

    def fsync(self, nodeid: int, fh: int, datasync: bool = False) -> None:
        self.call(p.Opcode.FSYNC, nodeid, p.FsyncIn(fh, FUSE_FSYNC_FDATASYNC if datasync else 0))

    def release(self, nodeid: int, fh: int, flags: int = 0) -> None:
        unique = next(self._unique)
        request = hot.RELEASE.encode(unique, nodeid, self._ids, fh, flags, 0, 0)
        self._hot(p.Empty, p.Opcode.RELEASE, request, unique, hot.parse_empty)

    def opendir(self, nodeid: int) -> p.OpenOut:
        return self._expect(p.OpenOut, p.Opcode.OPENDIR, nodeid,
                            p.OpenIn(os.O_RDONLY | os.O_DIRECTORY))

    def readdir(
        self, nodeid: int, fh: int, offset: int = 0, size: int = 65536
    ) -> tuple[p.Dirent, ...]:
        """Entries after `offset` that fit in `size` bytes (empty at the end)."""
        body = p.ReadIn(fh, offset, size)
        return self._expect(p.Dirents, p.Opcode.READDIR, nodeid, body, reply_room=size).entries

    def releasedir(self, nodeid: int, fh: int) -> None:
        self.call(p.Opcode.RELEASEDIR, nodeid, p.ReleaseIn(fh))

    def statfs(self, nodeid: int = FUSE_ROOT_ID) -> p.StatfsOut:
        return self._expect(p.StatfsOut, p.Opcode.STATFS, nodeid, p.EMPTY)

    def link(self, nodeid: int, newparent: int, newname: bytes) -> p.EntryOut:
        return self._expect(p.EntryOut, p.Opcode.LINK, newparent, p.LinkIn(nodeid, newname))

    def mknod(self, parent: int, name: bytes, mode: int, rdev: int = 0) -> p.EntryOut:
        return self._expect(p.EntryOut, p.Opcode.MKNOD, parent,
                            p.MknodIn(self._masked(mode), rdev, name, self.umask))

    def setxattr(self, nodeid: int, name: bytes, value: bytes, flags: int = 0) -> None:
        self.call(p.Opcode.SETXATTR, nodeid, p.SetxattrIn(name, value, flags))

    def getxattr(self, nodeid: int, name: bytes, size: int = XATTR_ROOM) -> bytes | int:
        """The value, or its length when `size` is 0."""
        reply = self._expect(p.Data, p.Opcode.GETXATTR, nodeid, p.GetxattrIn(name, size),
                             reply_room=max(size, p.XattrSizeOut.LAYOUT.size))
        return _sized(reply.data, size)

    def listxattr(self, nodeid: int, size: int = XATTR_ROOM) -> list[bytes] | int:
        """The names, or the length of their NUL-terminated list when `size` is 0."""
        reply = self._expect(p.Data, p.Opcode.LISTXATTR, nodeid, p.ListxattrIn(size),
                             reply_room=max(size, p.XattrSizeOut.LAYOUT.size))
        names = _sized(reply.data, size)
        return names if isinstance(names, int) else names.split(b"\0")[:-1]

    def removexattr(self, nodeid: int, name: bytes) -> None:
        self.call(p.Opcode.REMOVEXATTR, nodeid, p.Name(name))

    def fallocate(self, nodeid: int, fh: int, offset: int, length: int, mode: int = 0) -> None:
        self.call(p.Opcode.FALLOCATE, nodeid, p.FallocateIn(fh, offset, length, mode))

    def syncfs(self, nodeid: int = FUSE_ROOT_ID) -> None:
        self.call(p.Opcode.SYNCFS, nodeid, p.SyncfsIn())

    def setupmapping(
        self, nodeid: int, fh: int, foffset: int, length: int, writable: bool, moffset: int
    ) -> None:
        flags = FUSE_SETUPMAPPING_FLAG_READ | (FUSE_SETUPMAPPING_FLAG_WRITE if writable else 0)
        unique = next(self._unique)
        request = hot.SETUPMAPPING.encode(unique, nodeid, self._ids, fh, foffset, length, flags,
                                          moffset)
        with self._expecting_backend():  # its SHMEM_MAP comes while we wait
            self._hot(p.Empty, p.Opcode.SETUPMAPPING, request, unique, hot.parse_empty)

    def removemapping(self, ranges: list[tuple[int, int]]) -> None:
        body = p.RemovemappingIn(tuple(p.RemovemappingOne(m, n) for m, n in ranges))
        with self._expecting_backend():  # and its SHMEM_UNMAPs
            self.call(p.Opcode.REMOVEMAPPING, 0, body)


def _decode(data: bytes | memoryview, opcode: p.Opcode, unique: int, wants_reply: bool
            ) -> p.ReplyBody | None:
    """The reply body to request `unique` of `opcode`, or OSError(errno) for an error
    reply and (EPROTO/EIO) for one the back-end got wrong."""
    if not wants_reply:
        return None
    if not data:
        raise OSError(errno.EIO, f"{opcode.name}: the back-end returned no reply")
    try:
        reply = p.decode_reply(data, opcode)
    except p.ProtocolError as e:
        raise OSError(e.errno, f"{opcode.name}: {e}") from None
    if reply.unique != unique:
        raise OSError(errno.EPROTO, f"{opcode.name}: reply to another request")
    if reply.error:
        raise OSError(reply.error, f"{opcode.name}: {os.strerror(reply.error)}")
    return reply.body


def _sized(data: bytes, size: int) -> bytes | int:
    """A GETXATTR/LISTXATTR reply: fuse_getxattr_out when asked with size 0, else the bytes."""
    if size:
        return data
    try:
        return p.XattrSizeOut.decode(data).size
    except p.ProtocolError as e:
        raise OSError(errno.EPROTO, f"xattr size reply: {e}") from None
