"""backend_channel.c's reading of the front-end's REPLY_ACKs, the front-end (the VMM)
being untrusted: a reply to another request, an oversized or short one, a status outside
the errno range and fds sent along are each handled without trusting them. The front-end
is played on the other end of a socket pair, its answers written before the request."""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from pagefs.impl.transport._vring import ffi, lib
from pagefs.impl.transport.vhost_user import HEADER, U64

FLAG_VERSION, FLAG_REPLY = 0x1, 0x4


@pytest.fixture
def channel() -> Iterator[tuple[object, socket.socket]]:
    """A channel that negotiated SHMEM, and the front-end's end of its socket."""
    ours, theirs = socket.socketpair()
    chan = ffi.gc(lib.vu_chan_new(5000, 0), lib.vu_chan_free)
    lib.vu_chan_set(chan, ours.detach())
    lib.vu_chan_set_shmem(chan, 1)
    yield chan, theirs
    theirs.close()


def ack(request: int, status: int, flags: int = FLAG_VERSION | FLAG_REPLY) -> bytes:
    return HEADER.pack(request, flags, U64.size) + U64.pack(status)


def unmap(chan: object) -> tuple[int, int]:
    """One SHMEM_UNMAP: (the call's result, the range's status)."""
    status = ffi.new("int[]", 1)
    return lib.vu_shmem_unmap(chan, ffi.new("uint64_t[]", [0, 4096]), 1, status), status[0]


def test_an_ack_and_a_refusal_keep_the_channel(channel) -> None:
    chan, theirs = channel
    theirs.sendall(ack(lib.VU_BACKEND_SHMEM_UNMAP, 0) + ack(lib.VU_BACKEND_SHMEM_UNMAP, 22))
    assert unmap(chan) == (0, 0)
    assert unmap(chan) == (0, errno.EINVAL)
    assert lib.vu_chan_usable(chan) == 1


def test_a_status_outside_the_errno_range_is_eio(channel) -> None:
    chan, theirs = channel
    theirs.sendall(ack(lib.VU_BACKEND_SHMEM_UNMAP, 1 << 40))
    assert unmap(chan) == (0, errno.EIO)


@pytest.mark.parametrize("reply", [
    ack(lib.VU_BACKEND_SHMEM_MAP, 0),  # the answer to another request
    ack(lib.VU_BACKEND_SHMEM_UNMAP, 0, flags=FLAG_VERSION),  # not a reply
    ack(lib.VU_BACKEND_SHMEM_UNMAP, 0, flags=FLAG_REPLY | 0x2),  # another version
    HEADER.pack(lib.VU_BACKEND_SHMEM_UNMAP, FLAG_VERSION | FLAG_REPLY, 4) + b"\0" * 4,
    HEADER.pack(lib.VU_BACKEND_SHMEM_UNMAP, FLAG_VERSION | FLAG_REPLY, 4097),  # oversized
], ids=["other-request", "no-reply-flag", "bad-version", "short", "oversized"])
def test_a_reply_that_is_not_the_ack_breaks_the_channel(channel, reply: bytes) -> None:
    """EPROTO, and every later request ENOTCONN: a reply out of step could otherwise be
    taken for the next request's."""
    chan, theirs = channel
    theirs.sendall(reply + ack(lib.VU_BACKEND_SHMEM_UNMAP, 0))
    assert unmap(chan) == (-errno.EPROTO, -errno.EPROTO)
    assert lib.vu_chan_usable(chan) == 0
    assert unmap(chan) == (-errno.ENOTCONN, -errno.ENOTCONN)


def test_fds_sent_with_an_ack_are_closed(channel) -> None:
    chan, theirs = channel
    r, w = os.pipe()
    try:
        socket.send_fds(theirs, [ack(lib.VU_BACKEND_SHMEM_UNMAP, 0)], [w, w])
        os.close(w)
        assert unmap(chan) == (0, 0)
        os.set_blocking(r, False)
        assert os.read(r, 1) == b""  # no write end is left open in this process
    finally:
        os.close(r)


def test_the_front_end_closing_the_channel_is_enotconn(channel) -> None:
    chan, theirs = channel
    theirs.shutdown(socket.SHUT_WR)
    assert unmap(chan) == (-errno.ENOTCONN, -errno.ENOTCONN)


def test_the_donated_set_answers_while_a_request_awaits_its_ack(channel, tmp_path) -> None:
    """QEMU 11.1 sends SET_MEM_TABLE, listing the files we donated, and waits for our
    answer before it acks the next of our pipelined SHMEM requests. Asking whether a file
    was donated must not wait for that ack: it did, the channel timed out and broke, and
    a real guest's every later DAX read was ENOTCONN."""
    chan, theirs = channel
    path = tmp_path / "donated"
    path.write_bytes(b"x" * 4096)
    fd = os.open(path, os.O_RDONLY)
    try:
        theirs.sendall(ack(lib.VU_BACKEND_SHMEM_MAP, 0))
        assert lib.vu_shmem_map(chan, fd, 0, 0, 4096, 0) == 0
        st = os.fstat(fd)
    finally:
        os.close(fd)
    theirs.recv(4096)  # the SHMEM_MAP, with the fd that came along
    result: list[tuple[int, int]] = []
    waiting = threading.Thread(target=lambda: result.append(unmap(chan)))
    waiting.start()
    theirs.recv(HEADER.size)  # the SHMEM_UNMAP was sent: its ack is now awaited
    assert lib.vu_chan_donated(chan, st.st_dev, st.st_ino) == 1
    assert waiting.is_alive()  # answered before the ack came (or the wait timed out)
    theirs.sendall(ack(lib.VU_BACKEND_SHMEM_UNMAP, 0))
    waiting.join()
    assert result == [(0, 0)]


def test_the_session_ending_ends_a_wait_for_an_ack(channel) -> None:
    """The back-end tearing the guest down (vu_chan_shutdown, from another thread) ends a
    wait for an ack at once, spinning or asleep: ENOTCONN, not the deadline's ETIMEDOUT,
    so a front-end that never acks cannot hold a worker's queue thread past its session."""
    chan, theirs = channel
    result: list[tuple[int, int]] = []
    waiting = threading.Thread(target=lambda: result.append(unmap(chan)))
    waiting.start()
    theirs.recv(HEADER.size)  # the SHMEM_UNMAP was sent: its ack is now awaited
    lib.vu_chan_shutdown(chan)
    waiting.join()
    assert result == [(-errno.ENOTCONN, -errno.ENOTCONN)]
