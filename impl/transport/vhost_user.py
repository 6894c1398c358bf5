"""vhost-user framing: message ids, feature bits, payload layouts, and a channel that
sends and receives messages with file descriptors (SCM_RIGHTS) over a unix socket.

Facts from QEMU docs/interop/vhost-user.rst; VHOST_USER_BACKEND_SHMEM_MAP/_UNMAP,
GET_SHMEM_CONFIG and protocol feature SHMEM from the SHMEM series (Albert Esteve,
v13, 2026), whose MMAP flags are 0 = read-only, 1 = read-write. The series' drafts
numbered the feature 20; QEMU 11.1, the release that merged it, uses bit 22: offered 20,
it acks nothing and never asks GET_SHMEM_CONFIG; offered 22, it acks it and asks
(found by probing QEMU 11.1.3; reports/vm.md).
"""

from __future__ import annotations

import array
import errno
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from enum import IntEnum


class Request(IntEnum):
    """Front-end -> back-end messages on the main socket."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SET_BACKEND_REQ_FD = 21  # SET_SLAVE_REQ_FD in older texts
    GET_CONFIG = 24
    SET_CONFIG = 25
    GET_SHMEM_CONFIG = 44


class BackendRequest(IntEnum):
    """Back-end -> front-end messages on the backend channel."""

    SHMEM_MAP = 9
    SHMEM_UNMAP = 10


class ProtocolFeature(IntEnum):
    MQ = 0
    REPLY_ACK = 3
    BACKEND_REQ = 5
    CONFIG = 9
    BACKEND_SEND_FD = 10
    SHMEM = 22  # as QEMU 11.1 numbers it (the drafts said 20)


VIRTIO_RING_F_INDIRECT_DESC = 28
VIRTIO_RING_F_EVENT_IDX = 29
VHOST_USER_F_PROTOCOL_FEATURES = 30
VIRTIO_F_VERSION_1 = 32

FLAG_VERSION = 0x1
FLAG_VERSION_MASK = 0x3
FLAG_REPLY = 0x4
FLAG_NEED_REPLY = 0x8

VRING_IDX_MASK = 0xFF
VRING_NOFD = 0x100

MMAP_FLAG_RW = 0x1
SHMEM_MAX_REGIONS = 256
MAX_MEM_REGIONS = 8
MAX_FDS = 8
MAX_PAYLOAD = 4096  # larger than any message pagefs speaks (GET_SHMEM_CONFIG is 2056)

HEADER = struct.Struct("<III")  # request, flags, size
U64 = struct.Struct("<Q")
VRING_STATE = struct.Struct("<II")  # index, num
VRING_ADDR = struct.Struct("<IIQQQQ")  # index, flags, desc, used, avail, log
MEM_TABLE_HEAD = struct.Struct("<II")  # nregions, padding
MEM_REGION = struct.Struct("<QQQQ")  # guest_phys_addr, memory_size, userspace_addr, mmap_offset
MMAP = struct.Struct("<B7xQQQQ")  # shmid, padding, fd_offset, shm_offset, len, flags
SHMEM_CONFIG = struct.Struct(f"<II{SHMEM_MAX_REGIONS}Q")  # nregions, padding, sizes
# GET_CONFIG / SET_CONFIG: offset, size, flags, then `size` bytes of the device's config
# space. A back-end answers an error with an empty payload (not even this head).
CONFIG_HEAD = struct.Struct("<III")


def bit(n: int) -> int:
    return 1 << n


# What pagefs speaks at both ends: virtio 1.x rings with event suppression, protocol
# features, and (on top, when there is a DAX window) SHMEM.
VIRTIO_FEATURES = (
    bit(VIRTIO_F_VERSION_1) | bit(VHOST_USER_F_PROTOCOL_FEATURES) | bit(VIRTIO_RING_F_EVENT_IDX)
)
PROTOCOL_FEATURES = (
    bit(ProtocolFeature.MQ)
    | bit(ProtocolFeature.REPLY_ACK)
    | bit(ProtocolFeature.BACKEND_REQ)
    | bit(ProtocolFeature.BACKEND_SEND_FD)
)


class ProtocolError(Exception):
    """The peer sent something this end cannot accept; the connection must be dropped."""


@dataclass
class Message:
    request: int
    flags: int = FLAG_VERSION
    payload: bytes = b""
    fds: list[int] = field(default_factory=list)

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & FLAG_REPLY)

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & FLAG_NEED_REPLY)

    def take_fd(self) -> int:
        """The message's single fd; the caller owns it afterwards."""
        if len(self.fds) != 1:
            raise ProtocolError(f"request {self.request} carries {len(self.fds)} fds, not 1")
        return self.fds.pop()

    def close_fds(self) -> None:
        while self.fds:
            os.close(self.fds.pop())

    def unpack(self, layout: struct.Struct) -> tuple:
        if len(self.payload) < layout.size:
            raise ProtocolError(
                f"request {self.request}: payload of {len(self.payload)} bytes, "
                f"{layout.size} expected"
            )
        return layout.unpack_from(self.payload)


class Channel:
    """One end of a vhost-user socket. Owns the socket; `close()` closes it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(
        self,
        request: int,
        payload: bytes = b"",
        fds: list[int] | tuple[int, ...] = (),
        *,
        flags: int = 0,
    ) -> None:
        data = HEADER.pack(request, FLAG_VERSION | flags, len(payload)) + payload
        sent = socket.send_fds(self.sock, [data], list(fds)) if fds else self.sock.send(data)
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def call(
        self,
        request: int,
        payload: bytes = b"",
        fds: list[int] | tuple[int, ...] = (),
        *,
        flags: int = 0,
        timeout: float | None = None,
    ) -> Message:
        """Sends a request and returns the peer's reply to it (any fds in it closed).

        Raises ConnectionError (ENOTCONN) when the peer closes first, ProtocolError when
        what comes back is not that reply, TimeoutError when nothing comes in time."""
        name = getattr(request, "name", request)
        self.send(request, payload, fds, flags=flags)
        reply = self.recv(timeout=timeout)
        if reply is None:
            raise ConnectionError(errno.ENOTCONN, f"peer closed the connection during {name}")
        reply.close_fds()
        if not reply.is_reply or reply.request != request:
            raise ProtocolError(f"got message {reply.request} in reply to {name}")
        return reply

    def reply(self, request: Message, payload: bytes) -> None:
        self.send(request.request, payload, flags=FLAG_REPLY)

    def recv(self, timeout: float | None = None, *, deadline: float | None = None,
             wake_fd: int = -1) -> Message | None:
        """The next message, or None at end of stream. Raises ProtocolError, Stopped when
        `wake_fd` becomes readable, or TimeoutError.

        `deadline` (time.monotonic()) is absolute and holds for the whole message: a peer
        that trickles one byte at a time gains nothing by it, and every wait, between
        bytes too, also watches `wake_fd`. `timeout` is a deadline that far from now."""
        if timeout is not None:
            deadline = time.monotonic() + timeout if deadline is None else deadline
        wait = Waiter(self.sock, deadline, wake_fd)
        fds: list[int] = []
        try:
            head = self._recv_head(fds, wait)
            if head is None:
                return None
            request, flags, size = HEADER.unpack(head)
            if flags & FLAG_VERSION_MASK != FLAG_VERSION:
                raise ProtocolError(f"vhost-user version bits {flags & FLAG_VERSION_MASK}, not 1")
            if size > MAX_PAYLOAD:
                raise ProtocolError(f"payload of {size} bytes exceeds {MAX_PAYLOAD}")
            payload = self._recv_exact(size, wait)
            if payload is None:
                raise ProtocolError("connection closed inside a message")
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return Message(request, flags, payload, fds)

    def _recv_head(self, fds: list[int], wait: Waiter) -> bytes | None:
        cmsg_space = socket.CMSG_SPACE(MAX_FDS * 4)
        wait()
        data, ancdata, msg_flags, _ = self.sock.recvmsg(
            HEADER.size, cmsg_space, socket.MSG_CMSG_CLOEXEC
        )
        for level, kind, body in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(body[: len(body) - len(body) % got.itemsize])
                fds.extend(got)
        if msg_flags & socket.MSG_CTRUNC:
            raise ProtocolError(f"more than {MAX_FDS} fds in one message")
        if not data:
            return None
        if len(data) < HEADER.size:
            rest = self._recv_exact(HEADER.size - len(data), wait)
            if rest is None:
                raise ProtocolError("connection closed inside a message header")
            data += rest
        return data

    def _recv_exact(self, n: int, wait: Waiter) -> bytes | None:
        chunks = []
        while n:
            wait()
            chunk = self.sock.recv(n)
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def shutdown(self) -> None:
        """Wakes any thread blocked on this channel (used to stop from another thread)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def drain_eventfd(efd: int) -> None:
    """Resets a (non-blocking) kick or call eventfd, whether or not it was signalled."""
    try:
        os.eventfd_read(efd)
    except BlockingIOError:
        pass


class Stopped(Exception):
    """The wake fd given to `Channel.recv` was signalled while it waited: the owner stops."""


class Waiter:
    """Waits, before each read of one message, until the socket is readable: TimeoutError
    past the absolute `deadline`, Stopped once `wake_fd` is readable."""

    def __init__(self, sock: socket.socket, deadline: float | None, wake_fd: int) -> None:
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
        self._wake_fd = wake_fd
        if wake_fd >= 0:
            self._poller.register(wake_fd, select.POLLIN)
        self._deadline = deadline

    def __call__(self) -> None:
        self.until(self._deadline)

    def until(self, deadline: float | None) -> None:
        """Wait for the socket with this `deadline` rather than the one given at first."""
        while True:
            if deadline is None:
                wait_ms = None
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("vhost-user message not received by its deadline")
                wait_ms = max(1, int(left * 1000))
            ready = {fd for fd, _ in self._poller.poll(wait_ms)}
            if self._wake_fd in ready:
                raise Stopped("stopped while receiving")
            if ready:
                return
