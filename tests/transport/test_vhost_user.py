"""vhost-user between our front-end and our back-end on a real unix socket: negotiation,
requests in flight, teardown without leaks, and a back-end that survives (by dropping the
connection cleanly) whatever a front-end sends."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from pathlib import Path

import pytest
from pagefs_waits import wait_until

from pagefs.impl.transport import backend as backend_module
from pagefs.impl.transport.frontend import REQUEST_QUEUE, VhostUserFrontend
from pagefs.impl.transport.guest_memory import GuestMemory
from pagefs.impl.transport.vhost_user import (
    HEADER,
    MEM_REGION,
    MEM_TABLE_HEAD,
    U64,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
    VRING_STATE,
    Channel,
    ProtocolFeature,
    Request,
    bit,
)
from pagefs.impl.transport.virtqueue import DriverQueue, RingLayout

from .conftest import WINDOW_SIZE, helper_process, open_fds


def test_negotiation_and_echo(thread_backend, sock_path: str) -> None:
    tb = thread_backend()
    with VhostUserFrontend.connect(sock_path) as fe:
        assert fe.features == (
            bit(VIRTIO_F_VERSION_1) | bit(VHOST_USER_F_PROTOCOL_FEATURES)
            | bit(VIRTIO_RING_F_EVENT_IDX)
        )  # fmt: skip
        for feature in ("MQ", "REPLY_ACK", "BACKEND_REQ", "BACKEND_SEND_FD", "SHMEM"):
            assert fe.protocol_features & bit(ProtocolFeature[feature])
        assert fe.window is not None and fe.window.size == WINDOW_SIZE  # GET_SHMEM_CONFIG
        assert fe.submit(REQUEST_QUEUE, b"hello", 64).result(10) == b"echo:hello"
        assert fe.submit(0, b"hiprio", 64).result(10) == b"echo:hiprio"
    assert tb.join() and tb.backend.broken is None


def test_no_window_when_asked_for_none(thread_backend, sock_path: str) -> None:
    thread_backend()
    with VhostUserFrontend.connect(sock_path, window_size=0) as fe:
        assert fe.window is None
        assert not fe.protocol_features & bit(ProtocolFeature.SHMEM)


def test_many_requests_in_flight_from_many_threads(thread_backend, sock_path: str) -> None:
    thread_backend()
    with VhostUserFrontend.connect(sock_path, queue_size=16) as fe:
        def burst(t: int) -> None:
            futures = [fe.submit(REQUEST_QUEUE, b"%d-%d" % (t, i), 32) for i in range(300)]
            for i, f in enumerate(futures):
                assert f.result(30) == b"echo:%d-%d" % (t, i)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(burst, range(4)))


def test_reply_longer_than_offered_room_is_cut(thread_backend, sock_path: str) -> None:
    thread_backend(lambda request: b"x" * 100)
    with VhostUserFrontend.connect(sock_path) as fe:
        assert fe.submit(REQUEST_QUEUE, b"q", 10).result(10) == b"x" * 10


def test_handler_failure_and_no_reply_leave_connection_up(thread_backend, sock_path) -> None:
    def handle(request: bytes) -> bytes | None:
        if request == b"boom":
            raise RuntimeError("handler bug")
        return None if request == b"forget" else b"ok"

    tb = thread_backend(handle)
    with VhostUserFrontend.connect(sock_path) as fe:
        assert fe.submit(REQUEST_QUEUE, b"boom", 64).result(10) == b""
        assert fe.submit(0, b"forget", 0).result(10) == b""
        assert fe.submit(REQUEST_QUEUE, b"again", 64).result(10) == b"ok"
    assert tb.join() and tb.backend.broken is None


def test_cross_process_echo_and_clean_exit(process_backend, sock_path: str) -> None:
    with VhostUserFrontend.connect(sock_path) as fe:
        futures = [fe.submit(REQUEST_QUEUE, b"r%d" % i, 64) for i in range(2000)]
        assert [f.result(30) for f in futures] == [b"echo:r%d" % i for i in range(2000)]
    assert process_backend.wait(10) == 0


def test_stop_from_another_thread_ends_serve(thread_backend, sock_path: str) -> None:
    gate = threading.Event()
    tb = thread_backend(lambda request: gate.wait(10) and b"late")
    with VhostUserFrontend.connect(sock_path) as fe:
        tb.ready.wait(10)
        pending = fe.submit(REQUEST_QUEUE, b"slow", 64)
        stopper = threading.Thread(target=tb.backend.stop)
        stopper.start()
        gate.set()  # the request in the handler is finished and answered, then serve() ends
        stopper.join()
        assert tb.join()
        assert pending.result(10) == b"late"
        wait_until(lambda: not fe.alive, "the front-end to see the end")
        with pytest.raises(ConnectionError):
            fe.submit(REQUEST_QUEUE, b"after", 64)


def test_back_end_releases_every_fd_when_guest_is_killed(thread_backend, sock_path) -> None:
    before = open_fds()
    tb = thread_backend()
    with helper_process("sleeping_guest.py", sock_path, first_line="up") as guest:
        guest.send_signal(signal.SIGKILL)
        assert tb.join(), "serve() did not return after the guest died"
    assert tb.backend.broken is None
    assert open_fds() == before


def test_front_end_fails_pending_when_back_end_is_killed(process_backend, sock_path) -> None:
    with VhostUserFrontend.connect(sock_path) as fe:
        assert fe.submit(REQUEST_QUEUE, b"x", 64).result(10) == b"echo:x"
        process_backend.send_signal(signal.SIGKILL)
        wait_until(lambda: not fe.alive, "the front-end to see the end")
        with pytest.raises(ConnectionError):
            fe.submit(REQUEST_QUEUE, b"y", 64)


# ---- malformed input: the back-end drops the connection, serve() returns, no fd leaks ---


def _raw(request: int, payload: bytes = b"", flags: int = 1) -> bytes:
    return HEADER.pack(request, flags, len(payload)) + payload


MALFORMED = {
    "bad version bits": _raw(Request.GET_FEATURES, flags=2),
    "payload larger than any message": HEADER.pack(Request.SET_FEATURES, 1, 1 << 20),
    "unknown request": _raw(99),
    "request pagefs does not serve": _raw(Request.SET_LOG_BASE, bytes(16)),
    "reply flag on a request": _raw(Request.GET_FEATURES, flags=1 | 4),
    "short payload": _raw(Request.SET_FEATURES, b"\x01"),
    "features never offered": _raw(Request.SET_FEATURES, U64.pack(1 << 63)),
    "legacy device (no VERSION_1)": _raw(Request.SET_FEATURES, U64.pack(0)),
    "mem table without fds": _raw(
        Request.SET_MEM_TABLE, MEM_TABLE_HEAD.pack(1, 0) + MEM_REGION.pack(0, 4096, 0, 0)
    ),
    "queue size not a power of two": _raw(Request.SET_VRING_NUM, VRING_STATE.pack(1, 100)),
    "queue index out of range": _raw(Request.SET_VRING_NUM, VRING_STATE.pack(7, 64)),
    "kick without an fd": _raw(Request.SET_VRING_KICK, U64.pack(1)),
    "truncated header then close": HEADER.pack(Request.GET_FEATURES, 1, 0)[:5],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_message_drops_connection(thread_backend, sock_path, name: str) -> None:
    before = open_fds()
    tb = thread_backend()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        s.sendall(MALFORMED[name])
        if name.startswith("truncated"):
            s.shutdown(socket.SHUT_WR)
        assert tb.join(), "serve() did not return"
    assert name.startswith("truncated") or tb.backend.broken
    assert open_fds() == before


def test_too_many_fds_drop_connection(thread_backend, sock_path: str) -> None:
    tb = thread_backend()
    fds = [os.eventfd(0) for _ in range(12)]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(sock_path)
            Channel(s).send(Request.SET_VRING_KICK, U64.pack(1), fds)
            assert tb.join()
    finally:
        for fd in fds:
            os.close(fd)
    assert tb.backend.broken


def test_ring_outside_guest_memory_drops_connection(thread_backend, sock_path: str) -> None:
    tb = thread_backend()
    fe = VhostUserFrontend.connect(sock_path)
    try:
        fe._chan.send(Request.SET_VRING_ADDR, struct.pack("<IIQQQQ", 1, 0, 1 << 50, 0, 0, 0))
        fe._chan.send(Request.SET_VRING_ENABLE, VRING_STATE.pack(1, 1))
        assert tb.join()
        assert "outside guest memory" in tb.backend.broken
    finally:
        fe.close()


def _publish_by_hand(fe: VhostUserFrontend, descs: list[tuple[int, int, int, int]]) -> None:
    """Writes descriptors 100.. of the request queue and publishes 100 as a chain head."""
    layout = RingLayout.for_size(128)
    q = REQUEST_QUEUE * layout.size  # the front-end lays queues out one after another
    for k, desc in enumerate(descs):
        fe.memory.write(q + layout.desc + 16 * (100 + k), struct.pack("<QIHH", *desc))
    idx = struct.unpack("<H", fe.memory.read(q + layout.avail + 2, 2))[0]
    fe.memory.write(q + layout.avail + 4 + 2 * (idx % 128), struct.pack("<H", 100))
    fe.memory.write(q + layout.avail + 2, struct.pack("<H", (idx + 1) & 0xFFFF))
    os.eventfd_write(fe._queues[REQUEST_QUEUE].kick_fd, 1)


@pytest.mark.parametrize(
    "descs, why",
    [
        ([(1 << 16, 8, 1, 100)], f"errno {errno.ELOOP}"),  # a loop
        ([(0, 32 << 20, 1, 101 + k) for k in range(7)] + [(0, 32 << 20, 0, 0)], "exceeds"),
    ],
    ids=["descriptor loop", "request larger than any FUSE message"],
)
def test_hostile_chain_from_the_guest_drops_connection(
    thread_backend, sock_path: str, descs, why: str
) -> None:
    """A guest that publishes a descriptor loop, or a chain that would make the daemon
    allocate gigabytes, is disconnected; the daemon neither hangs nor runs out of memory."""
    tb = thread_backend()
    fe = VhostUserFrontend.connect(sock_path)
    try:
        assert fe.submit(REQUEST_QUEUE, b"x", 64).result(10) == b"echo:x"
        _publish_by_hand(fe, descs)
        assert tb.join()
        assert why in tb.backend.broken
    finally:
        fe.close()


def _send_with_fd(sock_path: str, request: Request, payload: bytes, fd: int) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        Channel(s).send(request, payload, [fd])
        s.recv(1)  # returns when the back-end drops the connection


def _mem_table(size: int) -> bytes:
    return MEM_TABLE_HEAD.pack(1, 0) + MEM_REGION.pack(0, size, 0x10000, 0)


@pytest.mark.parametrize(
    "size, seals, why",
    [
        # unsealed memory could be truncated under the daemon: a SIGBUS, not an error
        (1 << 20, 0, "F_SEAL_SHRINK"),
        (1 << 16, fcntl.F_SEAL_SHRINK, "shorter"),  # sealed, but less than claimed
    ],
)
def test_guest_memory_the_daemon_cannot_trust_is_refused(
    thread_backend, sock_path: str, size: int, seals: int, why: str
) -> None:
    tb = thread_backend()
    fd = os.memfd_create("guest-ram", os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        if seals:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        _send_with_fd(sock_path, Request.SET_MEM_TABLE, _mem_table(1 << 20), fd)
    finally:
        os.close(fd)
    assert tb.join() and why in tb.backend.broken


def test_kick_that_is_not_an_eventfd_is_refused(thread_backend, sock_path: str) -> None:
    tb = thread_backend()
    r, w = os.pipe()
    try:
        _send_with_fd(sock_path, Request.SET_VRING_KICK, U64.pack(1), r)
    finally:
        os.close(r)
        os.close(w)
    assert tb.join() and "not an eventfd" in tb.backend.broken


def test_futures_complete_without_anyone_waiting_on_them(thread_backend, sock_path) -> None:
    """Replies nobody calls result() for are delivered by the completion thread."""
    thread_backend()
    with VhostUserFrontend.connect(sock_path) as fe:
        seen = []
        done = threading.Event()

        def note(future) -> None:
            seen.append(future.result(0))
            if len(seen) == 100:
                done.set()

        for i in range(100):
            fe.submit(REQUEST_QUEUE, b"%d" % i, 32).add_done_callback(note)
        assert done.wait(30)
        assert sorted(seen) == sorted(b"echo:%d" % i for i in range(100))
        futures = [fe.submit(REQUEST_QUEUE, b"w%d" % i, 32) for i in range(100)]
        finished, waiting = futures_wait(futures, timeout=30)
        assert not waiting and {f.result(0) for f in finished} == {
            b"echo:w%d" % i for i in range(100)
        }


def test_result_times_out_while_the_device_holds_the_request(thread_backend, sock_path) -> None:
    gate = threading.Event()
    thread_backend(lambda request: gate.wait(10) and b"done")
    with VhostUserFrontend.connect(sock_path) as fe:
        pending = fe.submit(REQUEST_QUEUE, b"slow", 32)
        with pytest.raises(FutureTimeout):
            pending.result(0.05)
        assert not pending.cancel()  # a request in flight cannot be taken back
        gate.set()
        assert pending.result(10) == b"done"


def test_call_reaps_its_own_reply_and_times_out_like_result(thread_backend, sock_path) -> None:
    """call(): the caller reaps from before the kick, whether the reply is quick or held,
    a call made from inside a reply decoder (nested reaping) is answered too, and a
    timed-out call leaves the queue to the next caller."""
    gate = threading.Event()
    thread_backend(lambda request: (request != b"slow" or gate.wait(10)) and b"echo:" + request)
    with VhostUserFrontend.connect(sock_path) as fe:
        assert fe.call(REQUEST_QUEUE, b"quick", 64, timeout=10) == b"echo:quick"

        def decode_then_call(reply: bytes) -> tuple[bytes, object]:
            return reply, fe.call(REQUEST_QUEUE, b"inner", 64, timeout=10)

        assert fe.call(REQUEST_QUEUE, b"outer", 64, decode_then_call, timeout=10) == (
            b"echo:outer", b"echo:inner"
        )
        with pytest.raises(FutureTimeout):
            fe.call(REQUEST_QUEUE, b"slow", 64, timeout=0.05)
        gate.set()
        with ThreadPoolExecutor(1) as other:  # nobody is left holding the queue
            after = other.submit(fe.call, REQUEST_QUEUE, b"after", 64, timeout=10)
            assert after.result(20) == b"echo:after"


def test_rings_set_up_before_memory_and_without_protocol_features(
    thread_backend, sock_path: str
) -> None:
    """The order QEMU uses is not the only one: a front-end that negotiates no protocol
    features (rings start on their kick fd) and sends the memory table last is served."""
    thread_backend()
    mem = GuestMemory(1 << 20)
    layout = RingLayout.for_size(8)
    kick, call = os.eventfd(0), os.eventfd(0)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(sock_path)
            chan = Channel(s)
            chan.send(Request.SET_FEATURES, U64.pack(bit(VIRTIO_F_VERSION_1)))
            chan.send(Request.SET_VRING_NUM, VRING_STATE.pack(1, 8))
            chan.send(Request.SET_VRING_BASE, VRING_STATE.pack(1, 0))
            chan.send(
                Request.SET_VRING_ADDR,
                struct.pack(
                    "<IIQQQQ", 1, 0, mem.base + layout.desc, mem.base + layout.used,
                    mem.base + layout.avail, 0,
                ),
            )  # fmt: skip
            chan.send(Request.SET_VRING_KICK, U64.pack(1), [kick])
            chan.send(Request.SET_VRING_CALL, U64.pack(1), [call])
            chan.send(Request.SET_MEM_TABLE, _mem_table_at(mem), [mem.fd])
            driver = DriverQueue(mem.base, layout, event_idx=False)
            mem.write(layout.size, b"late memory")
            head = driver.add([(layout.size, 11)], [(layout.size + 64, 64)])
            os.eventfd_write(kick, 1)
            assert select.select([call], [], [], 10)[0], "no call notification"
            assert driver.get_used() == (head, 16)
            assert mem.read(layout.size + 64, 16) == b"echo:late memory"
    finally:
        os.close(kick)
        os.close(call)
        mem.close()


def _mem_table_at(mem: GuestMemory) -> bytes:
    return MEM_TABLE_HEAD.pack(1, 0) + MEM_REGION.pack(0, mem.size, mem.base, 0)


def test_backend_channel_fd_that_is_not_a_socket(thread_backend, sock_path: str) -> None:
    before = open_fds()
    tb = thread_backend()
    efd = os.eventfd(0)
    try:
        _send_with_fd(sock_path, Request.SET_BACKEND_REQ_FD, b"", efd)
    finally:
        os.close(efd)
    assert tb.join() and "not a socket" in tb.backend.broken
    assert open_fds() == before


def test_front_end_that_never_answers_shmem(thread_backend, sock_path, monkeypatch) -> None:
    """No answer in time: ETIMEDOUT, and the channel is not trusted again (ENOTCONN), so a
    late answer can never be taken for the next request's."""
    monkeypatch.setattr(backend_module, "BACKEND_REPLY_TIMEOUT", 0.1)
    tb = thread_backend()
    ours, theirs = socket.socketpair()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s, ours, theirs:
        s.connect(sock_path)
        chan = Channel(s)
        chan.send(Request.SET_PROTOCOL_FEATURES, U64.pack(bit(ProtocolFeature.SHMEM)))
        chan.send(Request.SET_BACKEND_REQ_FD, b"", [theirs.fileno()])
        chan.send(Request.GET_QUEUE_NUM)
        assert chan.recv(timeout=10).unpack(U64) == (2,)  # both messages were taken
        with pytest.raises(OSError) as late:
            tb.backend.shmem_unmap([(0, 4096)])
        assert late.value.errno == errno.ETIMEDOUT
        with pytest.raises(OSError) as gone:
            tb.backend.shmem_unmap([(0, 4096)])
        assert gone.value.errno == errno.ENOTCONN


def test_front_end_close_releases_every_thread_fd_and_mapping(process_backend, sock_path) -> None:
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    fe = VhostUserFrontend.connect(sock_path)
    window = f"{fe.window.base:x}-{fe.window.base + fe.window.size:x} ---p"
    futures = [fe.submit(REQUEST_QUEUE, b"x", 32) for _ in range(50)]
    assert all(f.result(10) == b"echo:x" for f in futures)
    maps = Path("/proc/self/maps").read_text()
    assert "memfd:pagefs-guest-ram" in maps and window in maps
    fe.close()
    fe.close()  # idempotent
    assert set(threading.enumerate()) == threads_before
    assert open_fds() == fds_before
    maps = Path("/proc/self/maps").read_text()
    assert "memfd:pagefs-guest-ram" not in maps  # guest memory unmapped
    assert window not in maps  # the window's reservation is gone
    with pytest.raises(ConnectionError):
        fe.submit(REQUEST_QUEUE, b"after", 32)


def test_a_reply_callback_may_wait_for_another_reply(thread_backend, sock_path) -> None:
    """Callbacks run in whichever thread reaps; one that waits for a second request must
    not wait for itself."""
    thread_backend()
    with VhostUserFrontend.connect(sock_path) as fe:
        inner = []

        def chain_another(first) -> None:
            inner.append(fe.submit(REQUEST_QUEUE, b"second", 32).result(10))

        first = fe.submit(REQUEST_QUEUE, b"first", 32)
        first.add_done_callback(chain_another)
        assert first.result(10) == b"echo:first"
        wait_until(lambda: inner == [b"echo:second"], "the second echo")


def test_sent_requests_are_not_waited_for_and_drain_waits_for_them(thread_backend,
                                                                     sock_path) -> None:
    """send(): a request without a reply (FUSE's FORGET) is queued and not waited for; its
    slot is recycled in C (more are sent than the queue holds), and drain() returns once
    the device has used them all."""
    gate = threading.Event()
    seen = []

    def handle(request: bytes) -> bytes | None:
        if request.startswith(b"forget"):
            gate.wait(10)
            seen.append(request)
            return None
        return b"echo:" + request

    thread_backend(handle)
    with VhostUserFrontend.connect(sock_path) as fe:
        assert fe.send(0, b"forget-first") is None  # returns though the back-end holds it
        with pytest.raises(FutureTimeout):
            fe.drain(0, timeout=0.05)
        gate.set()
        for i in range(300):  # more than the queue's 128 entries: recycled as they are used
            assert fe.send(0, b"forget-%d" % i) is None
        fe.drain(0, timeout=30)
        assert len(seen) == 301
        assert fe.call(REQUEST_QUEUE, b"after", 64, timeout=10) == b"echo:after"
