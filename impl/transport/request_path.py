"""The front-end's request path: submit and complete on its virtqueues, in C (driver.c).

`RequestPath` owns the driver end of every queue. A request and room for its reply are
put in guest memory, in the head descriptor's slot (or in a buffer of the heap when it
does not fit one), and published; `call` then waits for the reply and copies it out,
all in one C call made without the GIL: the waiting thread spins on the used ring for an
adaptive budget before it sleeps on the call eventfd (poller.c), so a back-to-back
request costs no system call when the back-end is quick. `submit` returns a Future
instead; whoever waits on it reaps the same way, and a background thread (`serve`)
completes the Futures nobody waits for and recycles the buffers of abandoned calls.

Callers get only OSError or ConnectionError: a back-end that hangs up, or a device that
breaks a ring, ends the connection and every waiter gets ConnectionError.
"""

from __future__ import annotations

import errno
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from pagefs.impl.transport._vring import ffi, lib
from pagefs.impl.transport.guest_memory import BufferHeap, GuestMemory
from pagefs.impl.transport.virtqueue import RingLayout

_SLOT_SIZES = (16384, 8192, 4096)  # a head's buffer: the largest the memory allows
_SLOT_SHARE = 4  # slots take at most a quarter of guest memory
_READY_BATCH = 256
_QUEUE_BITS = 48  # fe_background's words: queue index << 48 | token
_WAIT_SLICE = 0.5  # how often a thread waiting for heap memory re-checks the connection


_fe_call = lib.fe_call  # the synchronous round trip, looked up once


def _ns(timeout: float | None) -> int:
    return -1 if timeout is None else max(0, int(timeout * 1e9))


class Completion(Future):
    """A request's Future. Waiting on it reaps the used ring in the waiting thread (in C),
    so the device's call wakes the waiter directly, not a second thread; a request in
    flight cannot be cancelled."""

    def __init__(self, path: RequestPath, queue: int, cookie: int) -> None:
        super().__init__()
        self._path = path
        self._queue = queue
        self.cookie = cookie
        self._token = -1  # set once submitted

    def result(self, timeout: float | None = None) -> Any:
        self._path.await_completion(self, self._queue, self._token, timeout)
        return super().result(timeout=0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._path.await_completion(self, self._queue, self._token, timeout)
        return super().exception(timeout=0)

    def cancel(self) -> bool:
        return False


class _ReplyBuffer(threading.local):
    """Each thread's buffer a synchronous reply is copied into, with its C pointer: None
    while a call of this thread parses the reply in it (a call made meanwhile, by the
    parse, takes another)."""

    def __init__(self) -> None:
        self.slot: tuple[bytearray, Any] | None = _reply_slot(4096)


def _reply_slot(size: int) -> tuple[bytearray, Any]:
    data = bytearray(size)
    return data, ffi.from_buffer(data)


class _ExpectingBackend:
    """RequestPath.expecting_backend's context (a class: a generator-based context cost a
    microsecond per mapping call). Holds no state of its own: threads share it."""

    __slots__ = ("_shared",)

    def __init__(self, shared: Any) -> None:
        self._shared = shared

    def __enter__(self) -> None:
        lib.fe_expect_backend(self._shared, 1)

    def __exit__(self, *exc: object) -> None:
        lib.fe_expect_backend(self._shared, -1)


class RequestPath:
    """The driver ends of `num_queues` queues laid out from guest address 0 of `memory`,
    each with its kick and call eventfd; `chan_fd` is watched for the back-end's hang-up,
    `stop_fd` ends `serve`. spin_ns: the ceiling of the adaptive spin (0: never spin)."""

    def __init__(
        self,
        memory: GuestMemory,
        layout: RingLayout,
        fds: list[tuple[int, int]],
        *,
        event_idx: bool,
        chan_fd: int,
        stop_fd: int,
        spin_ns: int,
    ) -> None:
        self.memory = memory
        self._shared = ffi.gc(lib.fe_shared_new(chan_fd, stop_fd), lib.fe_shared_free)
        if self._shared == ffi.NULL:
            raise OSError(errno.ENOMEM, "cannot set up the request path")
        self._expecting = _ExpectingBackend(self._shared)
        slots_gpa = -(-len(fds) * layout.size // 4096) * 4096  # after the rings
        slot_size = next(
            (s for s in _SLOT_SIZES
             if slots_gpa + len(fds) * layout.num * s <= memory.size // _SLOT_SHARE), 0)
        base = ffi.cast("uint8_t *", memory.base)
        self._queues = []
        for index, (kick_fd, call_fd) in enumerate(fds):
            q = lib.fe_queue_new(
                self._shared, base, memory.size, index * layout.size, layout.desc, layout.avail,
                layout.used, layout.num, int(event_idx),
                slots_gpa + index * layout.num * slot_size, slot_size, kick_fd, call_fd, spin_ns,
            )  # fmt: skip
            if q == ffi.NULL:
                raise ValueError("guest memory too small for the queues")
            self._queues.append(ffi.gc(q, lib.fe_queue_free))
        self._c_queues = ffi.new("struct fe_queue *[]", self._queues)
        self._heap = BufferHeap(slots_gpa + len(fds) * layout.num * slot_size, memory.size)
        self._heap_freed = threading.Condition()
        self._lock = threading.Lock()  # for `dead`
        # Futures by cookie, the name driver.c gives back with a completed request
        self._pending: dict[int, tuple[Completion, Callable[[bytes], Any] | None]] = {}
        self._cookies = itertools.count(1)
        self._reply = _ReplyBuffer()
        self.dead: str | None = None

    # ---- requests ----------------------------------------------------------------

    def call(self, queue: int, request: bytes, reply_capacity: int,
             parse: Callable[[bytearray, int, Any], Any] | None, arg: Any,
             timeout: float | None) -> Any:
        """One round trip: `parse(buffer, length, arg)` reads the reply, the first `length`
        bytes of `buffer`, valid only while it runs (it must copy what it keeps), and its
        result is the call's. A parse may decline a reply with None (one it does not
        handle); the call then returns the reply's bytes, as it does with no parse.
        TimeoutError when `timeout` passes (the late reply is then dropped)."""
        local = self._reply
        own = local.slot  # None while this thread's is being parsed
        if own is not None and len(own[0]) >= reply_capacity:
            data, out = own
        else:
            data, out = _reply_slot(max(reply_capacity, 4096))
            if own is not None:  # this thread's was too small: the larger one from now on
                own = (data, out)
        local.slot = None
        try:
            got = _fe_call(self._queues[queue], request, len(request), reply_capacity, 0, out,
                           reply_capacity, -1 if timeout is None else _ns(timeout))
            if got < 0:
                got = self._call_heap(queue, request, reply_capacity, out, got, timeout)
            if parse is not None:
                parsed = parse(data, got, arg)
                if parsed is not None:
                    return parsed
            return bytes(memoryview(data)[:got])
        finally:
            if own is not None:
                local.slot = own

    def _call_heap(self, queue: int, request: bytes, reply_capacity: int, out: Any, got: int,
                   timeout: float | None) -> int:
        """The reply's length after `fe_call` failed with `got`: a request and reply too
        large for a slot go again in a buffer from the heap; any other failure raises."""
        if got == -errno.EMSGSIZE:
            heap = self._alloc(request, reply_capacity)
            got = lib.fe_call(self._queues[queue], request, len(request), reply_capacity,
                              heap, out, reply_capacity, _ns(timeout))
            if got != -errno.ETIMEDOUT:  # timed out: recycled with its late reply
                self._free(heap)
        if got < 0:
            raise self._failure(-got)
        return got

    def submit(self, queue: int, request: bytes, reply_capacity: int,
               decode: Callable[[bytes], Any] | None) -> Completion:
        """Publishes one request; its Future yields the reply (or `decode` of it)."""
        q = self._queues[queue]
        cookie = next(self._cookies)
        future = Completion(self, queue, cookie)
        # filed before it is submitted: the background thread may complete it at once
        self._pending[cookie] = (future, decode)
        heap = 0
        token = lib.fe_submit(q, request, len(request), reply_capacity, 0, 1, -1, cookie)
        if token == -errno.EMSGSIZE:  # larger than a slot: a buffer from the heap
            heap = self._alloc(request, reply_capacity)
            token = lib.fe_submit(q, request, len(request), reply_capacity, heap, 1, -1, cookie)
        if token < 0:
            self._pending.pop(cookie, None)
            if heap:
                self._free(heap)
            raise self._failure(-token)
        future._token = token
        return future

    def serve_window_while_waiting(self, window: Any, backend_fd: int) -> None:
        """`window` (struct shm_window *, ShmemWindow's) and the backend channel's socket:
        a `call` inside `expecting_backend` answers the SHMEM_MAP/_UNMAP it finds there
        while it spins for its reply (driver.h's fe_shared_window). Set before any call;
        both must outlive every call."""
        lib.fe_shared_window(self._shared, window, backend_fd)

    def expecting_backend(self) -> _ExpectingBackend:
        """A context: calls made inside make the back-end send backend requests
        (SETUPMAPPING, REMOVEMAPPING): their waiters look for them while they spin."""
        return self._expecting

    def send(self, queue: int, request: bytes) -> bool:
        """Publishes a request that has no reply and that nobody waits for (FUSE's
        FORGET): its slot is recycled in C once used, with no thread woken for it. False
        when it does not fit a slot (the caller then submits it)."""
        got = lib.fe_submit(self._queues[queue], request, len(request), 0, 0, lib.FE_DETACHED,
                            -1, 0)
        if got == -errno.EMSGSIZE:
            return False
        if got < 0:
            raise self._failure(-got)
        return True

    def drain(self, queue: int, timeout: float | None) -> None:
        """Returns once the device has used every request `send` put on `queue`."""
        got = lib.fe_drain(self._queues[queue], _ns(timeout))
        if got < 0:
            raise self._failure(-got)

    def _alloc(self, request: bytes, reply_capacity: int) -> int:
        length = -(-len(request) // 64) * 64 + reply_capacity
        if length > self.memory.size // 2:
            raise ValueError(f"buffer of {length} bytes larger than guest memory allows")
        with self._heap_freed:
            while (gpa := self._heap.alloc(max(1, length))) is None:
                if self.dead is not None:
                    raise ConnectionError(self.dead)
                self._heap_freed.wait(_WAIT_SLICE)
        return gpa

    def _free(self, gpa: int) -> None:
        self._heap.free(gpa)
        with self._heap_freed:
            self._heap_freed.notify_all()

    def _failure(self, err: int) -> Exception:
        """What a caller gets for a negative errno of driver.c."""
        if err == errno.ETIMEDOUT:
            return TimeoutError("no reply in time")
        if err in (errno.EPIPE, errno.EIO):
            why = self.dead or ("the device broke a queue" if err == errno.EIO
                                else "back-end closed the connection")
            self.die(why)
            return ConnectionError(self.dead or why)
        return OSError(err, f"front-end request path: {errno.errorcode.get(err, err)}")

    # ---- completion --------------------------------------------------------------

    def await_completion(self, future: Completion, queue: int, token: int,
                         timeout: float | None) -> None:
        """Returns when `future` is done or `timeout` has passed, reaping meanwhile."""
        if future.done():
            return
        got = lib.fe_wait(self._queues[queue], token, _ns(timeout))
        if got == 0:
            self._complete(queue, token, future.cookie)
        elif got in (-errno.EPIPE, -errno.EIO):
            self._failure(-got)  # fails every pending Future, this one included
        if got != -errno.ETIMEDOUT:  # another thread may be completing it: wait for that
            Future.exception(future, timeout)

    def _complete(self, queue: int, token: int, cookie: int) -> None:
        """Takes a used request's reply and completes the Future filed under `cookie`, if
        it still has one."""
        q = self._queues[queue]
        gpa = ffi.new("uint64_t *")
        length = lib.fe_claim(q, token, gpa)
        if length < 0:
            return  # completed by another thread
        reply = self.memory.read(gpa[0], length) if length else b""
        heap = lib.fe_release(q, token)
        if heap:
            self._free(heap)
        entry = self._pending.pop(cookie, None)
        if entry is None:  # an abandoned call's late reply, or the connection died
            return
        future, decode = entry
        if decode is None:
            future.set_result(reply)
            return
        try:
            value = decode(reply)
        except Exception as e:  # the caller's decoder: its failure is the request's
            future.set_exception(e)
        else:
            future.set_result(value)

    def serve(self) -> None:
        """The background thread: completes Futures nobody waits for until stop_fd fires
        or the connection ends."""
        words = ffi.new("uint64_t[]", 2 * _READY_BATCH)
        mask = (1 << _QUEUE_BITS) - 1
        while True:
            n = lib.fe_background(self._c_queues, len(self._queues), self._shared, words,
                                  _READY_BATCH)
            if n == 0:
                return
            if n < 0:
                self._failure(-n)
                return
            for k in range(n):
                word, cookie = int(words[2 * k]), int(words[2 * k + 1])
                self._complete(word >> _QUEUE_BITS, word & mask, cookie)

    def die(self, why: str) -> None:
        """Ends the connection: every waiter and pending Future gets ConnectionError."""
        with self._lock:
            if self.dead is None:
                self.dead = why
        lib.fe_kill(self._shared, self._c_queues, len(self._queues))
        # after the kill: a Future filed later belongs to a submission that fails itself
        failed = [future for future, _ in list(self._pending.values())]
        self._pending.clear()
        with self._heap_freed:
            self._heap_freed.notify_all()
        for future in failed:
            if not future.done():
                future.set_exception(ConnectionError(self.dead))

    def quiesce(self) -> None:
        """After `die`: returns once no thread is inside a queue's C calls."""
        for q in self._queues:
            lib.fe_quiesce(q)
        lib.fe_shared_close(self._shared)

    def poll_stats(self, queue: int) -> dict[str, int]:
        """The adaptive poller's figures for one queue."""
        out = ffi.new("uint64_t[6]")
        lib.fe_poll_stats(self._queues[queue], out)
        return dict(zip(("budget_ns", "waits", "spun", "slept", "contended", "spin_ns"), out,
                        strict=True))
