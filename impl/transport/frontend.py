"""vhost-user front-end: the guest (VMM) end of a virtio-fs device.

`VhostUserFrontend.connect(path)` negotiates with a back-end, hands it memfd-backed guest
memory (SET_MEM_TABLE), sets up the queues (0 = hiprio, 1.. = requests) with kick and
call eventfds, and opens the backend channel. `submit(queue, request, reply_capacity)`
puts one chain on a queue and returns a Future of the bytes the device wrote back; many
may be in flight; `call` makes one round trip in one C call (request_path.py). A caller
waiting on its Future reaps used chains itself; a completion thread completes the Futures
nobody waits for and notices a back-end that went away (pending futures then fail with
ConnectionError); a third thread serves SHMEM_MAP/_UNMAP into the DAX window (`window`, in C),
so a mapping is answered whatever the other threads are doing. `close()` stops the queues
(GET_VRING_BASE) and releases every thread, fd and mapping.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar, overload

from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.transport.guest_memory import GuestMemory
from pagefs.impl.transport.request_path import RequestPath
from pagefs.impl.transport.shmem_window import ShmemWindow
from pagefs.impl.transport.sizes import window_size_problem
from pagefs.impl.transport.vhost_user import (
    CONFIG_HEAD,
    FLAG_NEED_REPLY,
    MEM_REGION,
    MEM_TABLE_HEAD,
    MMAP,
    MMAP_FLAG_RW,
    PROTOCOL_FEATURES,
    SHMEM_CONFIG,
    U64,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VIRTIO_F_VERSION_1,
    VIRTIO_FEATURES,
    VIRTIO_RING_F_EVENT_IDX,
    VRING_ADDR,
    VRING_STATE,
    BackendRequest,
    Channel,
    Message,
    ProtocolError,
    ProtocolFeature,
    Request,
    bit,
)
from pagefs.impl.transport.virtqueue import RingLayout

Result = TypeVar("Result")

log = logging.getLogger(__name__)

HIPRIO_QUEUE = 0
REQUEST_QUEUE = 1
DEFAULT_MEM_SIZE = 64 << 20
DEFAULT_QUEUE_SIZE = 128
# The ceiling of a waiter's adaptive spin on the used ring before it sleeps: it covers
# the back-end's service time of a frequent request (a few us in pagefs-host's C path)
# and a back-end's own wake-up when that one slept (tens of us on a VM), so the waiter
# is not woken a second time. Below it the budget adapts (poller.h), and no waiter spins
# while every CPU is taken: on a busy machine the spinner would hold the CPU the woken
# back-end needs (measured: OPEN+RELEASE several times slower without that gate).
DEFAULT_SPIN_NS = 50_000


class _Queue:
    def __init__(self) -> None:
        self.kick_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.call_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)


class VhostUserFrontend:
    """A connected virtio-fs front-end. Build it with `connect()`."""

    def __init__(self, sock: socket.socket, mem_size: int, queue_size: int,
                 timeout: float | None = None) -> None:
        self._chan = Channel(sock)
        self._timeout = timeout  # for each vhost-user reply during the handshake
        self.memory = GuestMemory(mem_size)
        self.window: ShmemWindow | None = None
        self.features = 0
        self.protocol_features = 0
        self._queue_size = queue_size
        self._queues: list[_Queue] = []
        self._path: RequestPath | None = None
        self.spin_ns = DEFAULT_SPIN_NS
        self._backend_chan: Channel | None = None
        self._stop_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._on_shmem_map: Callable[[int, int, int, int, bool], None] | None = None

    @property
    def on_shmem_map(self) -> Callable[[int, int, int, int, bool], None] | None:
        """Told of each donated fd (fd, fd_offset, shm_offset, length, writable) before it
        is mapped; the fd is closed after, so an observer that keeps it dups it. While one
        is set, SHMEM_MAPs are carried out in Python, which calls it."""
        return self._on_shmem_map

    @on_shmem_map.setter
    def on_shmem_map(self, observer: Callable[[int, int, int, int, bool], None] | None) -> None:
        self._on_shmem_map = observer
        if self.window is not None:
            self.window.observe(observer is not None)

    # ---- set-up ------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        socket_path: str,
        *,
        mem_size: int = DEFAULT_MEM_SIZE,
        window_size: int | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        num_request_queues: int = 1,
        timeout: float = 10.0,
        spin_ns: int = DEFAULT_SPIN_NS,
    ) -> VhostUserFrontend:
        """Connects and negotiates. window_size: None takes the back-end's advertised size
        (GET_SHMEM_CONFIG), 0 asks for no DAX window. spin_ns: how long a waiter may spin
        on the used ring before it sleeps (adaptive below that; 0 never spins)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self = cls(sock, mem_size, queue_size, timeout)
        self.spin_ns = spin_ns
        try:
            self._negotiate(window_size, 1 + num_request_queues)
        except BaseException:
            self.close()
            raise
        return self

    def _call(
        self, request: Request, payload: bytes = b"", fds: tuple[int, ...] = (), *, flags: int = 0
    ) -> Message:
        """Sends a request and returns the back-end's reply to it."""
        return self._chan.call(request, payload, fds, flags=flags, timeout=self._timeout)

    def _set(self, request: Request, payload: bytes = b"", fds: tuple[int, ...] = ()) -> None:
        """Sends a request without a reply payload; with REPLY_ACK, waits for its ack."""
        if self.protocol_features & bit(ProtocolFeature.REPLY_ACK):
            (status,) = self._call(request, payload, fds, flags=FLAG_NEED_REPLY).unpack(U64)
            if status:
                raise OSError(errno.EIO, f"back-end refused {request.name} (status {status})")
        else:
            self._chan.send(request, payload, fds)

    def _negotiate(self, window_size: int | None, num_queues: int) -> None:
        self._chan.send(Request.SET_OWNER)
        (offered,) = self._call(Request.GET_FEATURES).unpack(U64)
        if not offered & bit(VIRTIO_F_VERSION_1):
            raise ProtocolError("back-end does not offer VIRTIO_F_VERSION_1")
        self.features = offered & VIRTIO_FEATURES
        if self.features & bit(VHOST_USER_F_PROTOCOL_FEATURES):
            (proto,) = self._call(Request.GET_PROTOCOL_FEATURES).unpack(U64)
            wanted = PROTOCOL_FEATURES | bit(ProtocolFeature.CONFIG)
            if window_size != 0:
                wanted |= bit(ProtocolFeature.SHMEM)
            self._chan.send(Request.SET_PROTOCOL_FEATURES, U64.pack(proto & wanted))
            self.protocol_features = proto & wanted
        if self.protocol_features & bit(ProtocolFeature.MQ):
            (available,) = self._call(Request.GET_QUEUE_NUM).unpack(U64)
            if available < num_queues:
                raise ProtocolError(f"back-end has {available} queues, {num_queues} needed")
        self._setup_window(window_size)
        if self.protocol_features & bit(ProtocolFeature.BACKEND_REQ):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._set(Request.SET_BACKEND_REQ_FD, fds=(theirs.fileno(),))
            finally:
                theirs.close()
            self._backend_chan = Channel(ours)
        self._set(Request.SET_FEATURES, U64.pack(self.features))
        region = MEM_REGION.pack(0, self.memory.size, self.memory.base, 0)
        self._set(Request.SET_MEM_TABLE, MEM_TABLE_HEAD.pack(1, 0) + region, (self.memory.fd,))
        self._setup_queues(num_queues)
        self._start_thread(self._requests.serve, "vhost-user-completions")
        if self._backend_chan is not None:
            # its own thread: a SHMEM request is answered even while reply callbacks run
            self._start_thread(self._run_backend_channel, "vhost-user-backend-channel")

    def get_config(self, offset: int, size: int) -> bytes | None:
        """`size` bytes of the device's config space at `offset` (GET_CONFIG), or None when
        the back-end answers with the protocol's error (an empty payload)."""
        reply = self._call(Request.GET_CONFIG, CONFIG_HEAD.pack(offset, size, 0) + bytes(size))
        if not reply.payload:
            return None
        got_offset, got_size, _ = reply.unpack(CONFIG_HEAD)
        whole = CONFIG_HEAD.size + size
        if (got_offset, got_size) != (offset, size) or len(reply.payload) != whole:
            raise ProtocolError(f"GET_CONFIG answered {len(reply.payload)} bytes for {size}")
        return reply.payload[CONFIG_HEAD.size :]

    def set_config(self, offset: int, data: bytes) -> None:
        """Writes the device's config space (SET_CONFIG); OSError if the back-end refuses."""
        self._set(Request.SET_CONFIG, CONFIG_HEAD.pack(offset, len(data), 0) + data)

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _setup_window(self, window_size: int | None) -> None:
        if not self.protocol_features & bit(ProtocolFeature.SHMEM):
            return
        if window_size is None:
            nregions, _, *sizes = self._call(Request.GET_SHMEM_CONFIG).unpack(SHMEM_CONFIG)
            window_size = sizes[0] if nregions else 0
            problem = window_size and window_size_problem(window_size, PAGE_SIZE)
            if problem:  # the back-end's word, not our caller's mistake
                raise OSError(errno.EPROTO, f"back-end advertised a bad window: {problem}")
        if window_size:
            self.window = ShmemWindow(window_size)

    def _setup_queues(self, num_queues: int) -> None:
        layout = RingLayout.for_size(self._queue_size)
        if num_queues * layout.size >= self.memory.size // 2:
            raise ValueError("guest memory too small for the queues")
        for index in range(num_queues):
            queue = _Queue()
            self._queues.append(queue)
            qva = self.memory.base + index * layout.size
            self._set(Request.SET_VRING_NUM, VRING_STATE.pack(index, layout.num))
            self._set(Request.SET_VRING_BASE, VRING_STATE.pack(index, 0))
            self._set(
                Request.SET_VRING_ADDR,
                VRING_ADDR.pack(
                    index, 0, qva + layout.desc, qva + layout.used, qva + layout.avail, 0
                ),
            )
            self._set(Request.SET_VRING_KICK, U64.pack(index), (queue.kick_fd,))
            self._set(Request.SET_VRING_CALL, U64.pack(index), (queue.call_fd,))
        self._path = RequestPath(
            self.memory, layout, [(q.kick_fd, q.call_fd) for q in self._queues],
            event_idx=bool(self.features & bit(VIRTIO_RING_F_EVENT_IDX)),
            chan_fd=self._chan.fileno(), stop_fd=self._stop_fd, spin_ns=self.spin_ns,
        )  # fmt: skip
        if self.window is not None and self._backend_chan is not None:
            # a waiter for a mapping's reply answers its SHMEM_MAP itself when it can
            self._path.serve_window_while_waiting(self.window.ptr, self._backend_chan.fileno())
        if self.features & bit(VHOST_USER_F_PROTOCOL_FEATURES):
            for index in range(num_queues):
                self._set(Request.SET_VRING_ENABLE, VRING_STATE.pack(index, 1))

    # ---- requests ----------------------------------------------------------------

    @property
    def _requests(self) -> RequestPath:
        """The request path, laid out by the handshake."""
        if self._path is None:
            raise ConnectionError("front-end not set up")
        return self._path

    @property
    def request_path(self) -> RequestPath:
        """The request path, for a caller whose every request counts: its `call` parses
        the reply in place (see RequestPath.call). After `close` its calls raise
        ConnectionError, as the front-end's do."""
        return self._requests

    @property
    def alive(self) -> bool:
        """False once closed or once the back-end has gone (pending requests then failed)."""
        return not self._closed and (self._path is None or self._path.dead is None)

    @property
    def num_queues(self) -> int:
        return len(self._queues)

    def poll_stats(self, queue: int) -> dict[str, int]:
        """The adaptive poller of a queue: its spin budget now (ns), how many waits found
        nothing at once, how many of those the spin met, how many slept."""
        return self._requests.poll_stats(queue)

    @overload
    def submit(self, queue: int, request: bytes, reply_capacity: int,
               decode: None = None) -> Future[bytes]: ...
    @overload
    def submit(self, queue: int, request: bytes, reply_capacity: int,
               decode: Callable[[bytes], Result]) -> Future[Result]: ...

    def submit(
        self,
        queue: int,
        request: bytes,
        reply_capacity: int,
        decode: Callable[[bytes], Any] | None = None,
    ) -> Future[Any]:
        """Queues one chain (request readable, reply_capacity writable bytes).

        The Future yields the bytes the device wrote (its used length), or `decode` of
        them (run by whichever thread reaps the reply; what it raises, the Future raises),
        or raises ConnectionError if the back-end goes away first. Blocks while the queue
        or the buffer memory is full."""
        self._check_open()
        return self._requests.submit(queue, request, reply_capacity, decode)

    @overload
    def call(self, queue: int, request: bytes, reply_capacity: int, decode: None = None,
             timeout: float | None = None) -> bytes: ...
    @overload
    def call(self, queue: int, request: bytes, reply_capacity: int,
             decode: Callable[[bytes], Result], timeout: float | None = None) -> Result: ...

    def call(
        self,
        queue: int,
        request: bytes,
        reply_capacity: int,
        decode: Callable[[bytes], Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """`submit`, then wait for the Future's result here (TimeoutError after `timeout`),
        in one C call: this thread reaps its own reply, spinning briefly before it sleeps."""
        self._check_open()
        reply = self._requests.call(queue, request, reply_capacity, None, None, timeout)
        return reply if decode is None else decode(reply)

    def send(self, queue: int, request: bytes) -> Future[bytes] | None:
        """Queues a request that has no reply and that nobody waits for (FUSE's FORGET):
        nothing is waited for and no thread is woken when the device uses it; its buffer
        is recycled when the used ring is next reaped. None, or (for a request too large
        for a head's slot) the Future of a `submit`."""
        self._check_open()
        if self._requests.send(queue, request):
            return None
        return self._requests.submit(queue, request, 0, None)

    def drain(self, queue: int, timeout: float | None = None) -> None:
        """Returns once the device has used every request `send` put on `queue`
        (TimeoutError after `timeout`)."""
        self._check_open()
        self._requests.drain(queue, timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionError("front-end closed")

    def _run_backend_channel(self) -> None:
        """Serves SHMEM_MAP/_UNMAP until stopped or the channel goes: in C, without the
        GIL (ShmemWindow.serve), but for what it leaves here (other requests, and each
        SHMEM_MAP while someone observes donated descriptors)."""
        chan = self._backend_chan
        assert chan is not None, "started once the channel exists"
        poller = select.poll()
        poller.register(chan.fileno(), select.POLLIN)
        poller.register(self._stop_fd, select.POLLIN)
        while True:
            try:
                if self.window is not None:
                    msg = self.window.serve(chan.fileno(), self._stop_fd)
                elif any(fd == self._stop_fd for fd, _ in poller.poll()):
                    return
                else:
                    msg = chan.recv()
            except (ProtocolError, OSError) as e:
                log.warning("backend channel dropped: %s", e)
                return
            if msg is None:
                return
            try:
                status = self._shmem_request(msg)
            except Exception:  # whatever the back-end sends, it gets an answer
                log.exception("SHMEM request failed")
                status = errno.EIO
            finally:
                msg.close_fds()
            if msg.need_reply:
                try:
                    chan.reply(msg, U64.pack(status))
                except OSError:
                    return

    def _shmem_request(self, msg: Message) -> int:
        """Carries out a backend request; returns 0 or the errno that refuses it."""
        try:
            shmid, fd_offset, shm_offset, length, flags = msg.unpack(MMAP)
        except ProtocolError:
            return errno.EINVAL
        if self.window is None or shmid != 0:
            return errno.EINVAL
        try:
            if msg.request == BackendRequest.SHMEM_MAP:
                if flags & ~MMAP_FLAG_RW or len(msg.fds) != 1:
                    return errno.EINVAL
                if self._on_shmem_map is not None:
                    self._on_shmem_map(msg.fds[0], fd_offset, shm_offset, length, bool(flags))
                self.window.map(msg.fds[0], fd_offset, shm_offset, length, bool(flags))
            elif msg.request == BackendRequest.SHMEM_UNMAP:
                self.window.unmap(shm_offset, length)
            else:
                return errno.EOPNOTSUPP
        except OSError as e:
            return e.errno or errno.EIO
        return 0

    # ---- teardown ----------------------------------------------------------------

    def close(self) -> None:
        """Stops the queues, disconnects, and releases every resource. Idempotent."""
        if self._closed:
            return
        self._closed = True
        os.eventfd_write(self._stop_fd, 1)  # never drained: wakes every thread of ours
        for thread in self._threads:
            thread.join()
        if self._backend_chan is not None:
            # nobody answers the back-end's SHMEM requests any more: one awaiting its ack
            # (a mapping still in flight) fails now, not at its timeout, and the queue it
            # is served on stops at our GET_VRING_BASE without waiting for it
            self._backend_chan.shutdown()
        if self._path is not None and self._path.dead is None:
            try:
                for index in range(len(self._queues)):
                    self._call(Request.GET_VRING_BASE, VRING_STATE.pack(index, 0))
            except (OSError, ProtocolError, TimeoutError) as e:
                log.info("back-end gone while stopping queues: %s", e)
        if self._path is not None:
            self._path.die("front-end closed")
            self._path.quiesce()  # no caller is inside the C path: its fds may close
        self._chan.close()
        if self._backend_chan is not None:
            self._backend_chan.close()
        for q in self._queues:
            os.close(q.kick_fd)
            os.close(q.call_fd)
        os.close(self._stop_fd)
        if self.window is not None:
            self.window.close()
        self.memory.close()

    def __enter__(self) -> VhostUserFrontend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
