"""A thread waiting for a mapping's reply answers the back-end's SHMEM_MAP/_UNMAP itself
(shm_window_try_serve), as the backend-channel thread would, and leaves it everything
else: a real window, real mappings of a real file, on a real socket pair whose other end
plays the back-end (messages written first: no threads, no timing)."""

from __future__ import annotations

import errno
import os
import socket
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
