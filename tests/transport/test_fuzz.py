"""Whatever the other end writes, each end stays whole: random descriptor tables against
the device's pop, random vhost-user traffic against the back-end, random backend-channel
requests against the front-end's window."""

from __future__ import annotations

import os
import socket
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagefs.impl.transport._vring import ffi
from pagefs.impl.transport.frontend import REQUEST_QUEUE, VhostUserFrontend
from pagefs.impl.transport.guest_memory import GuestMemory
from pagefs.impl.transport.vhost_user import (
    HEADER,
    MMAP,
    U64,
    BackendRequest,
    Channel,
    Request,
)
from pagefs.impl.transport.virtqueue import DeviceQueue, RingLayout, VirtqueueError

from .conftest import ThreadBackend, open_fds

MEM = 1 << 16
NUM = 8
F_NEXT, F_WRITE = 1, 2

descriptor = st.tuples(
    st.one_of(st.integers(0, MEM), st.integers(0, 2**64 - 1)),  # addr
    st.one_of(st.integers(0, 512), st.integers(0, 2**32 - 1)),  # len
    st.integers(0, 7),  # flags: NEXT, WRITE, INDIRECT in any mix
    st.one_of(st.integers(0, NUM - 1), st.integers(0, 2**16 - 1)),  # next
)


@settings(max_examples=300, deadline=None)
@given(
    table=st.lists(descriptor, min_size=NUM, max_size=NUM),
    heads=st.lists(st.integers(0, 2**16 - 1), min_size=1, max_size=NUM),
)
def test_pop_of_any_descriptor_table(table, heads) -> None:
    """pop() returns a chain wholly inside guest memory, no longer than the queue, readable
    buffers first; or refuses with VirtqueueError. It never reads outside memory or loops."""
    mem = GuestMemory(MEM)
    try:
        layout = RingLayout.for_size(NUM)
        for k, (addr, length, flags, nxt) in enumerate(table):
            mem.write(layout.desc + 16 * k, struct.pack("<QIHH", addr, length, flags, nxt))
        for k, head in enumerate(heads):
            mem.write(layout.avail + 4 + 2 * k, struct.pack("<H", head))
        mem.write(layout.avail + 2, struct.pack("<H", len(heads)))
        device = DeviceQueue(
            num=NUM,
            desc=mem.base + layout.desc,
            avail=mem.base + layout.avail,
            used=mem.base + layout.used,
            regions=[(0, MEM, mem.base)],
            event_idx=False,
        )
        for _ in heads:
            try:
                chain = device.pop()
            except VirtqueueError:
                break  # refused: the queue is broken, the connection would be dropped
            assert 1 <= chain.n_all <= NUM and 0 <= chain.n_out <= chain.n_all
            for k in range(chain.n_all):
                start = int(ffi.cast("uintptr_t", chain.segs[k].ptr)) - mem.base
                assert 0 <= start and start + chain.segs[k].len <= MEM
            chain.read()
            chain.write(b"\xaa" * 64)
    finally:
        mem.close()


request_ids = st.sampled_from([int(r) for r in Request] + [0, 99, 2**32 - 1])
message = st.one_of(
    st.binary(max_size=64),  # bytes with no structure at all
    st.builds(
        lambda req, flags, payload: HEADER.pack(req, flags, len(payload)) + payload,
        request_ids,
        st.integers(0, 15),
        st.binary(max_size=80),
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(traffic=st.lists(message, min_size=1, max_size=6), with_fd=st.booleans())
def test_back_end_survives_any_traffic(tmp_path_factory, traffic, with_fd: bool) -> None:
    path = str(tmp_path_factory.mktemp("fuzz") / "s")
    before = open_fds()
    tb = ThreadBackend(path, lambda request: b"ok", window_size=1 << 20)
    efd = os.eventfd(0)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            try:
                for k, data in enumerate(traffic):
                    if with_fd and k == 0:
                        socket.send_fds(s, [data], [efd])
                    else:
                        s.sendall(data)
            except OSError:
                pass  # the back-end already dropped us
        assert tb.join(), "serve() did not return after the front-end went away"
    finally:
        os.close(efd)
    assert open_fds() == before


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    request=st.sampled_from([BackendRequest.SHMEM_MAP, BackendRequest.SHMEM_UNMAP, 1, 77]),
    shmid=st.integers(0, 2),
    fd_offset=st.sampled_from([0, 4096, 100, 2**63]),
    shm_offset=st.sampled_from([0, 4096, 1 << 20, (1 << 20) - 4096, 2**64 - 4096, 7]),
    length=st.sampled_from([0, 4096, 1 << 20, 2**64 - 4096, 3]),
    flags=st.integers(0, 3),
    short=st.booleans(),
)
def test_front_end_window_survives_any_backend_request(
    tmp_path_factory, request, shmid, fd_offset, shm_offset, length, flags, short
) -> None:
    """A back-end's requests are carried out only inside the window, else refused with a
    non-zero REPLY_ACK; the front-end stays usable either way."""
    path = str(tmp_path_factory.mktemp("fuzz") / "s")
    tb = ThreadBackend(path, lambda request: b"ok", window_size=1 << 20)
    data = tmp_path_factory.mktemp("file") / "f"
    data.write_bytes(bytes(1 << 20))
    fd = os.open(data, os.O_RDWR)
    try:
        with VhostUserFrontend.connect(path) as fe:
            tb.ready.wait(10)
            chan = Channel(socket.socket(fileno=os.dup(tb.backend.backend.fileno())))
            payload = MMAP.pack(shmid, fd_offset, shm_offset, length, flags)
            chan.send(request, payload[:10] if short else payload, [fd], flags=8)
            reply = chan.recv(timeout=10)
            (status,) = reply.unpack(U64)
            inside = (
                request in (BackendRequest.SHMEM_MAP, BackendRequest.SHMEM_UNMAP)
                and not short
                and shmid == 0
                and 0 < length
                and shm_offset + length <= fe.window.size
            )
            if status == 0:
                assert inside
            chan.close()
            assert fe.window.mapped_bytes() <= fe.window.size
            assert fe.submit(REQUEST_QUEUE, b"x", 8).result(10) == b"ok"
        assert tb.join()
    finally:
        os.close(fd)
