"""One kernel request: decoded, relayed to the back-end, its reply encoded for the kernel.

Nodeids and handles are the back-end's own, passed through unchanged both ways; the
caller's uid, gid and pid go along, so the back-end creates files as the caller. Only
what the mount itself decides is rewritten: the cache timeouts (the user's, 0 by
default) and, for a file backed by a host fd, FOPEN_PASSTHROUGH with its backing id.

A request the codec does not speak is answered ENOSYS, which the kernel remembers (no
ACCESS, no xattrs, no fallocate); a back-end that is gone answers ENOTCONN.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import threading
from collections import OrderedDict

from pagefs.impl import protocol as p
from pagefs.impl.client.fuse_client import PATH_MAX, FuseClient
from pagefs.impl.mount.device import FuseDevice
from pagefs.impl.mount.donation import Donations
from pagefs.impl.mount.options import MountOptions, split_seconds
from pagefs.impl.protocol.codec import ERRNO_LIMIT

log = logging.getLogger("pagefs.mount")

O_ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR
# What a passthrough file no longer needs from the back-end's open flags: the kernel
# neither caches nor goes direct; it reads and writes the host file.
# Backing files kept registered after their last handle closes, most recent last: the
# next open of a file reuses its backing id instead of asking the back-end again.
IDLE_BACKINGS = 256
NOT_WITH_PASSTHROUGH = p.OpenReplyFlag.DIRECT_IO | p.OpenReplyFlag.KEEP_CACHE
# Replies whose size the request says; the rest fit the client's default room.
SIZED_REPLIES = frozenset({p.Opcode.READ, p.Opcode.READDIR, p.Opcode.GETXATTR,
                           p.Opcode.LISTXATTR})


class Relay:
    """Answers kernel requests through `client`; `donations` is None without passthrough."""

    def __init__(self, client: FuseClient, device: FuseDevice, options: MountOptions,
                 donations: Donations | None) -> None:
        self.client = client
        self.device = device
        self.donations = donations
        self.entry_timeout = split_seconds(options.entry_timeout)
        self.attr_timeout = split_seconds(options.attr_timeout)
        self._lock = threading.Lock()
        self._backing: dict[int, tuple[int, int]] = {}  # nodeid -> (backing id, handles)
        self._handles: dict[tuple[int, int], int] = {}  # passed-through (nodeid, fh)
        self._idle: OrderedDict[int, int] = OrderedDict()  # nodeid -> backing id, unused
        self.lost: str | None = None  # why the back-end went, once it has

    def handle(self, raw: bytes) -> bytes | None:
        """The reply to one request, or None for those that get none."""
        try:
            opcode, unique, nodeid, body, uid, gid, pid = p.decode_request_values(raw)
        except p.ProtocolError as e:
            if e.unique is None:
                log.error("undecodable request from the kernel: %s", e)
                return None
            if e.errno != errno.ENOSYS:
                log.warning("request refused: %s", e)
            return p.encode_error(e.unique, e.errno)
        if opcode == p.Opcode.INTERRUPT:
            return None  # every request runs to its end; the kernel is told then
        try:
            out = self._serve(opcode, nodeid, body, (uid, gid, pid))
        except ConnectionError as e:
            if self.lost is None:
                self.lost = str(e) or "connection closed"
                log.error("back-end lost (%s): every request now fails with ENOTCONN",
                          self.lost)
            return p.encode_error(unique, errno.ENOTCONN) if p.expects_reply(opcode) else None
        except OSError as e:
            err = e.errno if e.errno and 0 < e.errno < ERRNO_LIMIT else errno.EIO
            return p.encode_error(unique, err)
        if not p.expects_reply(opcode) or out is None:
            return None
        return p.encode_reply(unique, out)

    def _serve(self, opcode: p.Opcode, nodeid: int, body: p.RequestBody,
               caller: tuple[int, int, int]) -> p.ReplyBody | None:
        if self.lost is not None:
            raise ConnectionError(self.lost)
        if opcode == p.Opcode.DESTROY:
            return p.EMPTY
        room = None
        if opcode in SIZED_REPLIES:
            room = max(body.size, 64)  # type: ignore[union-attr]
        elif opcode == p.Opcode.READLINK:
            room = PATH_MAX
        # Before the back-end hears of it: once it has, it may give the nodeid to another file.
        if opcode == p.Opcode.FORGET:
            self._forget_backings([nodeid])
        elif opcode == p.Opcode.BATCH_FORGET:
            self._forget_backings([one.nodeid for one in body.entries])  # type: ignore[union-attr]
        future = self.client.submit(opcode, nodeid, body, reply_room=room, caller=caller)
        if not p.expects_reply(opcode):
            future.result()
            return None
        out = future.result()
        if out is None:
            raise OSError(errno.EIO, f"{opcode.name}: no reply body")
        if opcode == p.Opcode.RELEASE:
            self._release_backing(nodeid, body.fh)  # type: ignore[union-attr]
        return self._rewrite(opcode, nodeid, body, out)

    def _rewrite(self, opcode: p.Opcode, nodeid: int, body: p.RequestBody,
                 out: p.ReplyBody) -> p.ReplyBody:
        """The back-end's reply with the mount's own timeouts and passthrough."""
        if isinstance(out, p.EntryOut):
            return self._entry(out)
        if isinstance(out, p.AttrOut):
            return dataclasses.replace(out, attr_valid=self.attr_timeout[0],
                                       attr_valid_nsec=self.attr_timeout[1])
        if isinstance(out, p.CreateOut):
            entry = self._entry(out.entry)
            return p.CreateOut(entry, self._open(entry.nodeid, body.flags, out.open))  # type: ignore[union-attr]
        if opcode == p.Opcode.OPEN:
            return self._open(nodeid, body.flags, out)  # type: ignore[union-attr, arg-type]
        return out

    def _entry(self, entry: p.EntryOut) -> p.EntryOut:
        return dataclasses.replace(
            entry, entry_valid=self.entry_timeout[0], entry_valid_nsec=self.entry_timeout[1],
            attr_valid=self.attr_timeout[0], attr_valid_nsec=self.attr_timeout[1])

    # ---- passthrough -------------------------------------------------------------
    # The kernel backs every passthrough open of an inode with one backing file (it
    # refuses a second), so each nodeid gets one, read-write where the export allows,
    # counted by the handles open on it; the caller's own access still limits each handle.

    def _open(self, nodeid: int, flags: int, out: p.OpenOut) -> p.OpenOut:
        """OPEN's reply, backed by the host file when the back-end donates it."""
        if self.donations is None:
            return out
        with self._lock:
            try:
                backing_id = self._backing_of(nodeid, out.fh, flags)
            except ConnectionError:
                raise
            except OSError as e:
                # Not fatal: the file is relayed, READ and WRITE through the back-end.
                log.warning("nodeid %d fh %d not passed through (%s)", nodeid, out.fh, e)
                return out
            self._handles[(nodeid, out.fh)] = nodeid
        open_flags = (out.open_flags & ~NOT_WITH_PASSTHROUGH) | p.OpenReplyFlag.PASSTHROUGH
        return p.OpenOut(out.fh, open_flags, backing_id)

    def _backing_of(self, nodeid: int, fh: int, flags: int) -> int:
        held = self._backing.get(nodeid)
        if held is not None:
            self._backing[nodeid] = (held[0], held[1] + 1)
            return held[0]
        backing_id = self._idle.pop(nodeid, None) or \
            self.device.backing_open_and_close(self._host_fd(nodeid, fh, flags))
        self._backing[nodeid] = (backing_id, 1)
        return backing_id

    def _host_fd(self, nodeid: int, fh: int, flags: int) -> int:
        """The host file behind nodeid, read-write unless the export refuses it.

        The back-end maps only handles it may read, and writable ones only without
        O_APPEND; a handle that cannot ask is replaced by a second one, opened to ask with.
        """
        assert self.donations is not None
        access = flags & O_ACCMODE
        if access == os.O_RDWR and not flags & os.O_APPEND:
            return self.donations.host_fd(nodeid, fh, writable=True)
        try:
            side = self.client.open(nodeid, os.O_RDWR)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            if access == os.O_RDONLY:  # a read-only export: reads are all there is
                return self.donations.host_fd(nodeid, fh, writable=False)
            side = self.client.open(nodeid, os.O_RDONLY)
            writable = False
        else:
            writable = True
        try:
            return self.donations.host_fd(nodeid, side.fh, writable)
        finally:
            self.client.release(nodeid, side.fh)

    def _release_backing(self, nodeid: int, fh: int) -> None:
        evicted = []
        with self._lock:
            if self._handles.pop((nodeid, fh), None) is None:
                return
            backing_id, count = self._backing.pop(nodeid)
            if count > 1:
                self._backing[nodeid] = (backing_id, count - 1)
                return
            self._idle[nodeid] = backing_id
            while len(self._idle) > IDLE_BACKINGS:
                evicted.append(self._idle.popitem(last=False)[1])
        self._close_backings(evicted)

    def _forget_backings(self, nodeids: list[int]) -> None:
        """A nodeid the kernel forgets may name another file later: its idle backing goes."""
        with self._lock:
            gone = [b for n in nodeids if (b := self._idle.pop(n, None)) is not None]
        self._close_backings(gone)

    def _close_backings(self, backing_ids: list[int]) -> None:
        for backing_id in backing_ids:
            try:
                self.device.backing_close(backing_id)
            except OSError as e:
                log.warning("backing id %d not closed: %s", backing_id, e)
