"""A thread waiting for a mapping's reply answers the back-end's SHMEM_MAP/_UNMAP itself
(shm_window_try_serve), as the backend-channel thread would, and leaves it everything
else: a real window, real mappings of a real file, on a real socket pair whose other end
plays the back-end (messages written first: no threads, no timing)."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagefs.impl.transport._vring import lib
from pagefs.impl.transport.shmem_window import ShmemWindow
from pagefs.impl.transport.vhost_user import (
    FLAG_NEED_REPLY,
    FLAG_REPLY,
    FLAG_VERSION,
    HEADER,
    MMAP,
    U64,
    BackendRequest,
)

MIB = 1 << 20
ASK = FLAG_VERSION | FLAG_NEED_REPLY


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ShmemWindow, socket.socket, socket.socket, int]]:
    """A window, the front-end's end of the channel, the back-end's, and a file's fd."""
    ours, theirs = socket.socketpair()
    window = ShmemWindow(4 * MIB)
    path = tmp_path / "file"
    path.write_bytes(b"file bytes" + bytes(MIB - 10))
    fd = os.open(path, os.O_RDONLY)
    yield window, ours, theirs, fd
    os.close(fd)
    ours.close()
    theirs.close()
    window.close()


def request(kind: int, shm_offset: int, length: int, *, fd_offset: int = 0,
            flags: int = ASK) -> bytes:
    return HEADER.pack(kind, flags, MMAP.size) + MMAP.pack(0, fd_offset, shm_offset, length, 0)


def send_map(theirs: socket.socket, fd: int, shm_offset: int, *, fd_offset: int = 0) -> None:
    socket.send_fds(theirs, [request(BackendRequest.SHMEM_MAP, shm_offset, MIB,
                                     fd_offset=fd_offset)], [fd])


def acks(theirs: socket.socket, count: int) -> list[tuple[int, int, int]]:
    """(request, flags, status) of `count` answers."""
    got = []
    for _ in range(count):
        request_, flags, size = HEADER.unpack(theirs.recv(HEADER.size))
        got.append((request_, flags, U64.unpack(theirs.recv(size))[0]))
    return got


def try_serve(window: ShmemWindow, ours: socket.socket) -> int:
    return int(lib.shm_window_try_serve(window.ptr, ours.fileno()))


def test_a_whole_map_and_unmap_are_answered_by_the_waiter(pair) -> None:
    window, ours, theirs, fd = pair
    send_map(theirs, fd, MIB)
    assert lib.shm_window_pending(window.ptr, ours.fileno()) == 1
    assert lib.shm_window_pending(window.ptr, ours.fileno()) == 1  # a look takes nothing
    assert try_serve(window, ours) == 1
    assert [(m.moffset, m.length) for m in window.mappings()] == [(MIB, MIB)]
    assert acks(theirs, 1) == [(BackendRequest.SHMEM_MAP, FLAG_VERSION | FLAG_REPLY, 0)]
    assert window.waiter_served == 1
    theirs.send(request(BackendRequest.SHMEM_UNMAP, MIB, MIB))
    assert try_serve(window, ours) == 1
    assert window.mappings() == []
    assert acks(theirs, 1)[0][2] == 0
    assert try_serve(window, ours) == 0  # nothing there: nothing done
    assert lib.shm_window_pending(window.ptr, ours.fileno()) == 0


def test_a_refusal_is_answered_as_the_serve_thread_would(pair) -> None:
    window, ours, theirs, fd = pair
    send_map(theirs, fd, MIB, fd_offset=1)  # not page aligned
    assert try_serve(window, ours) == 1
    assert acks(theirs, 1)[0][2] == errno.EINVAL
    assert window.mappings() == []


def test_what_the_serve_loop_hands_to_its_caller_is_left_to_it(pair) -> None:
    window, ours, theirs, fd = pair
    window.observe(True)  # an observer of donated descriptors sees each SHMEM_MAP
    send_map(theirs, fd, 0)
    assert lib.shm_window_pending(window.ptr, ours.fileno()) == 0
    assert try_serve(window, ours) == 0
    handed = window.serve(ours.fileno(), -1)
    assert handed is not None and handed.request == BackendRequest.SHMEM_MAP
    handed.close_fds()
    window.observe(False)
    # while a handed message is unanswered, no other is answered before it
    theirs.send(request(BackendRequest.SHMEM_UNMAP, 0, MIB))
    assert try_serve(window, ours) == 0
    theirs.send(HEADER.pack(99, ASK, 0))  # not a SHMEM request at all
    assert try_serve(window, ours) == 0


def test_a_message_not_wholly_there_is_left(pair) -> None:
    window, ours, theirs, _ = pair
    whole = request(BackendRequest.SHMEM_UNMAP, 0, MIB)
    theirs.send(whole[:HEADER.size + 8])
    assert lib.shm_window_pending(window.ptr, ours.fileno()) == 0
    assert try_serve(window, ours) == 0
    theirs.send(whole[HEADER.size + 8:])
    assert try_serve(window, ours) == 1
    assert acks(theirs, 1)[0][2] == errno.EINVAL  # nothing was mapped there


def test_a_channel_the_waiter_broke_is_reported_by_the_serve_loop(pair) -> None:
    window, ours, theirs, fd = pair
    send_map(theirs, fd, 0)
    theirs.shutdown(socket.SHUT_RD)  # its ack cannot be delivered
    ours.shutdown(socket.SHUT_WR)
    assert try_serve(window, ours) < 0
    with pytest.raises(OSError) as broken:
        window.serve(ours.fileno(), -1)
    assert broken.value.errno == errno.EPIPE


def waiter_turn(window: ShmemWindow, ours: socket.socket) -> int:
    return int(lib.shm_window_waiter_turn(window.ptr, ours.fileno()))


def test_a_waiters_turn_answers_ours_and_leaves_the_rest_to_the_serve_thread(pair) -> None:
    window, ours, theirs, fd = pair
    assert waiter_turn(window, ours) == 0  # nothing there
    send_map(theirs, fd, MIB)
    assert waiter_turn(window, ours) == 1
    assert acks(theirs, 1)[0][2] == 0
    theirs.send(HEADER.pack(99, ASK, 0))  # not a SHMEM request: the serve thread's
    assert waiter_turn(window, ours) == lib.SHM_WAITER_LEFT
    assert waiter_turn(window, ours) == lib.SHM_WAITER_LEFT  # and it stays there
    handed = window.serve(ours.fileno(), -1)
    assert handed is not None and handed.request == 99
    whole = request(BackendRequest.SHMEM_UNMAP, MIB, MIB)
    theirs.send(whole[:HEADER.size])  # a part: what comes of it is the serve thread's
    assert waiter_turn(window, ours) == lib.SHM_WAITER_LEFT


class ServeThread:
    """window.serve on `ours` in a thread, as the front-end's backend-channel thread runs
    it (in C, without the GIL); what it hands out is collected, and `stop` ends it."""

    def __init__(self, window: ShmemWindow, ours: socket.socket) -> None:
        self.window, self.ours = window, ours
        self.stop_fd = os.eventfd(0, os.EFD_CLOEXEC)
        self.handed: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (msg := self.window.serve(self.ours.fileno(), self.stop_fd)) is not None:
            msg.close_fds()
            self.handed.append(msg.request)

    def stop(self) -> None:
        os.eventfd_write(self.stop_fd, 1)
        self.thread.join(LONG_ENOUGH)
        os.close(self.stop_fd)
        assert not self.thread.is_alive(), "the serve loop did not stop"


LONG_ENOUGH = 60.0  # seconds: only a hang runs out of it (nothing here is timed)


@pytest.fixture
def expecting(pair):
    """`pair`, with a call that expects backend requests in flight while the test runs."""
    window = pair[0]
    lib.shm_window_expect(window.ptr, 1)
    assert lib.shm_window_expecting(window.ptr)
    yield pair
    lib.shm_window_expect(window.ptr, -1)
    assert not lib.shm_window_expecting(window.ptr)


def test_each_message_is_answered_once_by_the_waiter_or_the_parked_serve_thread(
        expecting) -> None:
    window, ours, theirs, fd = expecting
    serving = ServeThread(window, ours)
    try:
        for k in range(50):
            send_map(theirs, fd, (k % 4) * MIB)
            while lib.shm_window_pending(window.ptr, ours.fileno()):
                waiter_turn(window, ours)  # whichever takes it, it is answered once
            assert acks(theirs, 1) == [(BackendRequest.SHMEM_MAP, FLAG_VERSION | FLAG_REPLY,
                                        0)]
        assert len(window.mappings()) == 4
    finally:
        serving.stop()
    assert serving.handed == []
    assert waiter_turn(window, ours) == 0  # no answer, nor message, left over


def test_a_parked_serve_thread_stops_when_told(expecting) -> None:
    window, ours, _, _ = expecting
    serving = ServeThread(window, ours)  # parks: a call expects backend requests
    serving.stop()


def test_what_no_waiter_answers_reaches_the_serve_loops_caller(expecting) -> None:
    window, ours, theirs, fd = expecting
    serving = ServeThread(window, ours)
    try:
        theirs.send(HEADER.pack(99, ASK, 0))
        assert waiter_turn(window, ours) in (0, lib.SHM_WAITER_LEFT)  # 0: already taken
        window.observe(True)  # and a SHMEM_MAP while an observer looks: the caller's too
        send_map(theirs, fd, 0)
        deadline = time.monotonic() + LONG_ENOUGH  # a hang fails, not waits for ever
        while len(serving.handed) < 2 and time.monotonic() < deadline:
            serving.thread.join(0.01)
    finally:
        serving.stop()
    assert serving.handed == [99, BackendRequest.SHMEM_MAP]


def test_once_the_calls_end_the_serve_thread_answers_without_a_waiter(pair) -> None:
    window, ours, theirs, fd = pair
    lib.shm_window_expect(window.ptr, 1)
    serving = ServeThread(window, ours)  # parked while the call is in flight
    try:
        lib.shm_window_expect(window.ptr, -1)
        send_map(theirs, fd, MIB)  # nobody else takes it: the serve thread does
        assert acks(theirs, 1)[0][2] == 0
    finally:
        serving.stop()
    assert window.waiter_served == 0
    assert [(m.moffset, m.length) for m in window.mappings()] == [(MIB, MIB)]
