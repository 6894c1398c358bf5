"""vhost-user front-end: the guest (VMM) end of a virtio-fs device.

`VhostUserFrontend.connect(path)` negotiates with a back-end, hands it memfd-backed guest
memory (SET_MEM_TABLE), sets up the queues (0 = hiprio, 1.. = requests) with kick and
call eventfds, and opens the backend channel. `submit(queue, request, reply_capacity)`
puts one chain on a queue and returns a Future of the bytes the device wrote back; many
may be in flight. A caller waiting on its Future reaps used chains itself; a completion
thread reaps for callbacks and notices a back-end that went away (pending futures then
fail with ConnectionError); a third thread serves SHMEM_MAP/_UNMAP into the DAX window
(`window`), so a mapping is answered whatever the other threads are doing. `close()`
stops the queues (GET_VRING_BASE) and releases every thread, fd and mapping.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from typing import Any, TypeVar, overload

from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.transport.guest_memory import BufferHeap, GuestMemory
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
    drain_eventfd,
)
from pagefs.impl.transport.virtqueue import DriverQueue, RingLayout, VirtqueueError

Result = TypeVar("Result")

log = logging.getLogger(__name__)

HIPRIO_QUEUE = 0
REQUEST_QUEUE = 1
DEFAULT_MEM_SIZE = 64 << 20
DEFAULT_QUEUE_SIZE = 128
_BUFFER_ALIGN = 64
_WAIT_SLICE = 0.5  # how often a blocked submitter or waiter re-checks the connection lives


class _Queue:
    def __init__(self, driver: DriverQueue) -> None:
        self.driver = driver
        self.kick_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.call_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        # head -> (future, buffer address, reply offset in it, reply capacity, decode)
        self.pending: dict[int, tuple] = {}
        # the thread that, waiting for a reply, drains the used ring itself (the completion
        # thread then leaves the call eventfd to it), or None
        self.reaper: int | None = None
        # the reaper's poller on the call eventfd (one thread reaps a queue at a time)
        self.poller = select.poll()
        self.poller.register(self.call_fd, select.POLLIN)


class _Completion(Future):
    """A request's Future. Waiting on it drains the used ring in the waiting thread, so a
    caller waiting for its reply is woken by the device's call eventfd directly rather
    than through a second thread; a request in flight cannot be cancelled."""

    def __init__(self, frontend: VhostUserFrontend, queue: _Queue) -> None:
        super().__init__()
        self._frontend = frontend
        self._queue = queue

    def result(self, timeout: float | None = None) -> object:
        self._frontend._wait_for(self, self._queue, timeout)
        return super().result(timeout=0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._frontend._wait_for(self, self._queue, timeout)
        return super().exception(timeout=0)

    def cancel(self) -> bool:
        return False


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
        self._heap: BufferHeap | None = None
        self._lock = threading.Lock()
        # signalled when room is freed in a queue or the buffer heap, and when a reaper leaves
        self._changed = threading.Condition(self._lock)
        # the completion thread's; a reaping caller takes its queue's call eventfd out of it
        # meanwhile, so each of the device's calls wakes one thread, not two
        self._completions = select.epoll()
        self._backend_chan: Channel | None = None
        self._stop_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._threads: list[threading.Thread] = []
        self._dead: str | None = None
        self._closed = False
        # Told of each donated fd (fd, fd_offset, shm_offset, length, writable) before it is
        # mapped; the fd is closed after, so an observer that keeps it dups it.
        self.on_shmem_map: Callable[[int, int, int, int, bool], None] | None = None

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
    ) -> VhostUserFrontend:
        """Connects and negotiates. window_size: None takes the back-end's advertised size
        (GET_SHMEM_CONFIG), 0 asks for no DAX window."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self = cls(sock, mem_size, queue_size, timeout)
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
        for q in self._queues:
            self._completions.register(q.call_fd, select.EPOLLIN)
        self._start_thread(self._run, "vhost-user-completions")
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
        event_idx = bool(self.features & bit(VIRTIO_RING_F_EVENT_IDX))
        for index in range(num_queues):
            start = index * layout.size
            queue = _Queue(DriverQueue(self.memory.base + start, layout, event_idx=event_idx))
            self._queues.append(queue)
            qva = self.memory.base + start
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
        self._heap = BufferHeap(num_queues * layout.size, self.memory.size)
        if self.features & bit(VHOST_USER_F_PROTOCOL_FEATURES):
            for index in range(num_queues):
                self._set(Request.SET_VRING_ENABLE, VRING_STATE.pack(index, 1))

    # ---- requests ----------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once closed or once the back-end has gone (pending requests then failed)."""
        return self._dead is None and not self._closed

    @property
    def num_queues(self) -> int:
        return len(self._queues)

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
        future, _ = self._submit(self._queues[queue], request, reply_capacity, decode, False)
        return future

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
        """`submit`, then wait for the Future's result here (TimeoutError after `timeout`).

        Unless another thread is reaping the queue, this thread becomes its reaper as it
        kicks the device, so the reply wakes this thread alone, however soon it comes."""
        q = self._queues[queue]
        future, reaping = self._submit(q, request, reply_capacity, decode, True)
        if reaping:
            try:
                deadline = _deadline(timeout)
                while not future.done() and (wait := _time_left(deadline)) > 0:
                    self._poll_and_reap(q, future, wait)
            finally:
                self._stop_reaping(q)
            timeout = 0  # spent
        return future.result(timeout)

    def _submit(
        self,
        q: _Queue,
        request: bytes,
        reply_capacity: int,
        decode: Callable[[bytes], object] | None,
        reap: bool,
    ) -> tuple[Future, bool]:
        """`submit`; with `reap`, this thread also becomes q's reaper if no thread is
        (returned True: the caller must `_stop_reaping`)."""
        room = -(-len(request) // _BUFFER_ALIGN) * _BUFFER_ALIGN
        with self._lock:
            if self._dead or self._closed:
                raise ConnectionError(self._dead or "front-end closed")
            gpa = self._alloc(room + reply_capacity)
            try:
                self.memory.write(gpa, request)
                writable = [(gpa + room, reply_capacity)] if reply_capacity else []
                while (head := q.driver.add([(gpa, len(request))], writable)) is None:
                    self._wait()
            except BaseException:
                self._buffers.free(gpa)
                raise
            future = _Completion(self, q)
            q.pending[head] = (future, gpa, room, reply_capacity, decode)
            # Reaper before the kick: the kick may hand the CPU to the back-end, whose reply
            # can come before this thread runs again.
            reaping = reap and q.reaper is None
            if reaping:
                self._start_reaping(q)
            try:
                if q.driver.kick_needed(q.driver.avail_idx - 1):
                    os.eventfd_write(q.kick_fd, 1)
            except BaseException:
                if reaping:
                    q.reaper = None
                    self._completions.modify(q.call_fd, select.EPOLLIN)
                raise
        return future, reaping

    @property
    def _buffers(self) -> BufferHeap:
        """The request/reply buffer heap, laid out by the handshake."""
        if self._heap is None:
            raise ConnectionError("front-end not set up")
        return self._heap

    def _alloc(self, length: int) -> int:
        if length > self.memory.size // 2:
            raise ValueError(f"buffer of {length} bytes larger than guest memory allows")
        while (gpa := self._buffers.alloc(max(1, length))) is None:
            self._wait()
        return gpa

    def _wait(self) -> None:
        """Waits for completions to free room (called with the lock held)."""
        if self._dead or self._closed:
            raise ConnectionError(self._dead or "front-end closed")
        self._changed.wait(_WAIT_SLICE)

    # ---- completion thread -------------------------------------------------------

    def _wait_for(self, future: Future, q: _Queue, timeout: float | None) -> None:
        """Returns when `future` is done or `timeout` has passed, reaping meanwhile."""
        deadline = _deadline(timeout)
        while not future.done():
            wait = _time_left(deadline)
            if wait <= 0:
                return
            me = threading.get_ident()
            with self._lock:
                mine = q.reaper in (None, me) and self._dead is None and not self._closed
                # a reply callback that itself waits runs inside our reaping: still ours
                outermost = mine and q.reaper is None
                if outermost:
                    self._start_reaping(q)
            if not mine:  # another thread reaps for everyone, or nobody will any more
                futures_wait([future], wait)
                continue
            if not outermost:
                self._poll_and_reap(q, future, wait)
                continue
            try:
                self._poll_and_reap(q, future, wait)
            finally:
                self._stop_reaping(q)

    def _start_reaping(self, q: _Queue) -> None:
        """This thread reaps q from now on (called with the lock held). Meanwhile the
        completion thread does not watch q's call eventfd: a call wakes one thread, not
        two that then contend for the GIL."""
        q.reaper = threading.get_ident()
        self._completions.modify(q.call_fd, 0)

    def _stop_reaping(self, q: _Queue) -> None:
        try:
            # A call for what we reap now must not wake the completion thread once it
            # watches again: drain first, then reap what was used while it left q to us.
            drain_eventfd(q.call_fd)
            self._reap(q)
        finally:  # even if the ring turned out malformed: never leave q without a reaper
            with self._lock:
                q.reaper = None
                # level-triggered: the call for anything used after that look wakes it
                self._completions.modify(q.call_fd, select.EPOLLIN)
                self._changed.notify_all()

    def _poll_and_reap(self, q: _Queue, future: Future, wait: float) -> None:
        self._reap(q)
        if not future.done():
            if q.poller.poll(max(1, int(wait * 1000))):
                drain_eventfd(q.call_fd)
            self._reap(q)

    def _run(self) -> None:
        poller = self._completions
        by_fd = {q.call_fd: q for q in self._queues}
        poller.register(self._stop_fd, select.EPOLLIN)
        poller.register(self._chan.fileno(), select.EPOLLRDHUP)
        try:
            while True:
                for fd, _events in poller.poll():
                    if fd == self._stop_fd:
                        return
                    if fd in by_fd:
                        self._reap_for_waiters(by_fd[fd])
                    elif fd == self._chan.fileno():
                        for q in self._queues:  # replies pushed before it went still count
                            self._reap(q)
                        raise ConnectionError("back-end closed the connection")
        except (ConnectionError, VirtqueueError, ProtocolError, OSError) as e:
            self._die(str(e))
        except Exception as e:  # never leave waiters hanging on a thread that is gone
            log.exception("front-end completion thread failed")
            self._die(f"front-end completion thread failed: {e!r}")

    def _reap_for_waiters(self, q: _Queue) -> None:
        if q.reaper is not None:
            return
        drain_eventfd(q.call_fd)
        self._reap(q)
        if q.reaper is not None:
            # a caller began reaping before its reply was handed over here: wake it, or
            # it would sleep on the eventfd this thread just drained
            os.eventfd_write(q.call_fd, 1)

    def _reap(self, q: _Queue) -> None:
        """Hands every used chain of q to its Future. A device that breaks the ring (a used
        id not in flight) ends the connection: every caller gets ConnectionError, the one
        type a front-end call raises besides OSError, never the ring's own error."""
        try:
            self._reap_used(q)
        except VirtqueueError as e:
            self._die(f"device broke queue {self._queues.index(q)}: {e}")
            raise ConnectionError(f"device broke the queue: {e}") from e

    def _reap_used(self, q: _Queue) -> None:
        done = []
        with self._lock:
            while True:
                while (used := q.driver.get_used()) is not None:
                    head, written = used
                    future, gpa, room, capacity, decode = q.pending.pop(head)
                    reply = (
                        self.memory.read(gpa + room, min(written, capacity)) if capacity else b""
                    )
                    self._buffers.free(gpa)
                    done.append((future, reply, decode))
                if not q.driver.has_used():
                    break
            if done:
                self._changed.notify_all()
        for future, reply, decode in done:
            if decode is None:
                future.set_result(reply)
                continue
            try:
                value = decode(reply)
            except Exception as e:  # the caller's decoder: its failure is the request's
                future.set_exception(e)
            else:
                future.set_result(value)

    def _run_backend_channel(self) -> None:
        """Serves SHMEM_MAP/_UNMAP until stopped or the channel goes."""
        chan = self._backend_chan
        assert chan is not None, "started once the channel exists"
        poller = select.poll()
        poller.register(chan.fileno(), select.POLLIN)
        poller.register(self._stop_fd, select.POLLIN)
        while all(fd != self._stop_fd for fd, _ in poller.poll()):
            try:
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
                if self.on_shmem_map is not None:
                    self.on_shmem_map(msg.fds[0], fd_offset, shm_offset, length, bool(flags))
                self.window.map(msg.fds[0], fd_offset, shm_offset, length, bool(flags))
            elif msg.request == BackendRequest.SHMEM_UNMAP:
                self.window.unmap(shm_offset, length)
            else:
                return errno.EOPNOTSUPP
        except OSError as e:
            return e.errno or errno.EIO
        return 0

    def _die(self, why: str) -> None:
        with self._lock:
            self._dead = why
            failed = [entry[0] for q in self._queues for entry in q.pending.values()]
            for q in self._queues:
                q.pending.clear()
                if q.reaper is not None:
                    os.eventfd_write(q.call_fd, 1)  # a reaping caller wakes and sees it
            self._changed.notify_all()
        for future in failed:
            future.set_exception(ConnectionError(why))

    # ---- teardown ----------------------------------------------------------------

    def close(self) -> None:
        """Stops the queues, disconnects, and releases every resource. Idempotent."""
        if self._closed:
            return
        self._closed = True
        os.eventfd_write(self._stop_fd, 1)  # never drained: wakes every thread of ours
        for thread in self._threads:
            thread.join()
        if self._dead is None:
            try:
                for index in range(len(self._queues)):
                    self._call(Request.GET_VRING_BASE, VRING_STATE.pack(index, 0))
            except (OSError, ProtocolError, TimeoutError) as e:
                log.info("back-end gone while stopping queues: %s", e)
        self._die("front-end closed")
        with self._lock:  # no reaping caller may still poll a call fd we are closing
            while any(q.reaper is not None for q in self._queues):
                self._changed.wait(_WAIT_SLICE)
        self._chan.close()
        if self._backend_chan is not None:
            self._backend_chan.close()
        for q in self._queues:
            os.close(q.kick_fd)
            os.close(q.call_fd)
        os.close(self._stop_fd)
        self._completions.close()
        if self.window is not None:
            self.window.close()
        self.memory.close()

    def __enter__(self) -> VhostUserFrontend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _time_left(deadline: float | None) -> float:
    """How long the next wait may be: a slice, so that a dead connection is noticed."""
    return _WAIT_SLICE if deadline is None else min(_WAIT_SLICE, deadline - time.monotonic())
