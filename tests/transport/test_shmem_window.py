"""The DAX window: VHOST_USER_BACKEND_SHMEM_MAP / _UNMAP with real file fds, real
mappings (checked in /proc/self/maps) and real loads and stores on the file's pages."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from pagefs_waits import wait_until

from pagefs.impl.transport import mapping
from pagefs.impl.transport.frontend import REQUEST_QUEUE, VhostUserFrontend
from pagefs.impl.transport.vhost_user import MEM_REGION, MEM_TABLE_HEAD, Request

from .conftest import open_fds

MIB = 1 << 20


def maps_entry(address: int) -> tuple[str, str]:
    """(permissions, path) of the mapping that holds `address` in this process."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[1], fields[5] if len(fields) > 5 else ""
    raise AssertionError(f"nothing mapped at {address:#x}")


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "shared.dat"
    path.write_bytes(b"host bytes " + bytes(4 * MIB - 11))
    return path


@pytest.fixture
def connected(thread_backend, sock_path: str):
    tb = thread_backend()
    fe = VhostUserFrontend.connect(sock_path)
    tb.ready.wait(10)
    yield tb.backend, fe
    fe.close()


def test_map_store_load_unmap(connected, host_file: Path) -> None:
    backend, fe = connected
    fds_before = open_fds()
    fd = os.open(host_file, os.O_RDWR)
    try:
        backend.shmem_map(fd, MIB, 2 * MIB, 2 * MIB, True)
    finally:
        os.close(fd)
    at = fe.window.base + 2 * MIB
    assert maps_entry(at) == ("rw-s", str(host_file))
    assert open_fds() == fds_before  # the donated fd was closed; the mapping holds the file
    mapping.poke(at + 5, b"guest store")  # COH-WRITE: visible to host reads at once
    with open(host_file, "rb") as f:
        f.seek(MIB + 5)
        assert f.read(11) == b"guest store"
    with open(host_file, "r+b") as f:  # COH-READ: a host write is the next load's bytes
        f.seek(MIB + 100)
        f.write(b"host write")
    assert mapping.peek(at + 100, 10) == b"host write"
    assert fe.window.mapped_bytes() == 2 * MIB
    backend.shmem_unmap([(2 * MIB, 2 * MIB)])
    assert maps_entry(at) == ("---p", "")  # the inaccessible reservation is back
    assert fe.window.mapped_bytes() == 0


def test_read_only_map_and_replacement(connected, host_file: Path) -> None:
    backend, fe = connected
    fd = os.open(host_file, os.O_RDONLY)
    try:
        backend.shmem_map(fd, 0, 0, MIB, False)
        assert maps_entry(fe.window.base) == ("r--s", str(host_file))
        assert mapping.peek(fe.window.base, 10) == b"host bytes"
    finally:
        os.close(fd)
    fd = os.open(host_file, os.O_RDWR)
    try:
        backend.shmem_map(fd, 0, 0, MIB, True)  # same range, now writable: replaced
    finally:
        os.close(fd)
    assert maps_entry(fe.window.base) == ("rw-s", str(host_file))
    backend.shmem_unmap([(0, MIB)])


@pytest.mark.parametrize(
    "fd_offset, shm_offset, length, writable, expected",
    [
        (0, 15 * MIB, 2 * MIB, False, errno.EINVAL),  # runs past the 16 MiB window
        (0, 16 * MIB, 4096, False, errno.EINVAL),  # starts at the window's end
        (0, 100, 4096, False, errno.EINVAL),  # window offset not page aligned
        (100, 0, 4096, False, errno.EINVAL),  # file offset not page aligned
        (0, 0, 1000, False, errno.EINVAL),  # length not page aligned
        (0, 0, 0, False, errno.EINVAL),  # nothing to map
        (0, 0, MIB, True, errno.EACCES),  # writable mapping of a read-only fd
        (2**63, 0, 4096, False, errno.EOVERFLOW),  # file offset no off_t can hold
    ],
)
def test_bad_map_is_refused_and_connection_stays(
    connected, host_file: Path, fd_offset, shm_offset, length, writable, expected
) -> None:
    backend, fe = connected
    fd = os.open(host_file, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as refused:
            backend.shmem_map(fd, fd_offset, shm_offset, length, writable)
    finally:
        os.close(fd)
    assert refused.value.errno == expected
    assert fe.window.mapped_bytes() == 0
    assert fe.submit(REQUEST_QUEUE, b"still", 64).result(10) == b"echo:still"


def test_unmap_of_unmapped_range_is_refused(connected, host_file: Path) -> None:
    backend, fe = connected
    fd = os.open(host_file, os.O_RDONLY)
    try:
        backend.shmem_map(fd, 0, 0, MIB, False)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as refused:
        backend.shmem_unmap([(0, 2 * MIB)])  # half of it was never mapped
    assert refused.value.errno == errno.EINVAL
    assert fe.window.mapped_bytes() == MIB


def test_pipelined_unmaps_are_each_answered(connected, host_file: Path) -> None:
    """Several SHMEM_UNMAPs go out before their acks are read: every range is asked for,
    the one the front-end refuses is reported, the others are unmapped all the same, and
    the channel stays in step (the next request's ack is its own)."""
    backend, fe = connected
    fd = os.open(host_file, os.O_RDONLY)
    try:
        for k in (0, 2, 3):
            backend.shmem_map(fd, 0, k * MIB, MIB, False)
        with pytest.raises(OSError) as refused:
            backend.shmem_unmap([(0, MIB), (MIB, MIB), (2 * MIB, MIB), (3 * MIB, MIB)])
        assert refused.value.errno == errno.EINVAL
        assert fe.window.mapped_bytes() == 0
        # more than one batch in flight (VU_UNMAP_BATCH is 64), the last one mapped
        backend.shmem_map(fd, 0, 3 * MIB, MIB, False)
        with pytest.raises(OSError) as refused:
            backend.shmem_unmap([(k * 4096, 4096) for k in range(100)] + [(3 * MIB, MIB)])
        assert refused.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert fe.window.mapped_bytes() == 0
    assert fe.submit(REQUEST_QUEUE, b"still", 64).result(10) == b"echo:still"


def test_no_window_means_no_shmem(thread_backend, sock_path: str, host_file: Path) -> None:
    tb = thread_backend()
    with VhostUserFrontend.connect(sock_path, window_size=0) as fe:
        tb.ready.wait(10)
        assert fe.window is None
        fd = os.open(host_file, os.O_RDONLY)
        try:
            with pytest.raises(OSError) as refused:
                tb.backend.shmem_map(fd, 0, 0, MIB, False)
        finally:
            os.close(fd)
        assert refused.value.errno == errno.EOPNOTSUPP


def test_map_requested_from_inside_a_request_across_processes(
    process_backend, sock_path: str, host_file: Path
) -> None:
    """The daemon's path: a request on the virtqueue makes the back-end process donate a
    file fd on the backend channel and wait for the ack while the request is in flight."""
    with VhostUserFrontend.connect(sock_path) as fe:
        def ask(words: str) -> bytes:
            return fe.submit(REQUEST_QUEUE, words.encode(), 64).result(10)

        assert ask(f"map {host_file} {4 * MIB} {2 * MIB} rw") == b"ok"
        at = fe.window.base + 4 * MIB
        assert maps_entry(at) == ("rw-s", str(host_file))
        assert mapping.peek(at, 10) == b"host bytes"
        mapping.poke(at, b"HOST")
        assert host_file.read_bytes()[:10] == b"HOST bytes"
        assert ask(f"map {host_file} {4 * MIB + 1} {MIB} ro") == b"err %d" % errno.EINVAL
        assert ask(f"unmap {4 * MIB} {2 * MIB}") == b"ok"
        assert maps_entry(at) == ("---p", "")


def test_map_requested_from_a_reply_callback(
    process_backend, sock_path: str, host_file: Path
) -> None:
    """A reply callback that sends a request needing SHMEM_MAP, and waits for it, gets its
    answer: the backend channel is served apart from the threads that run callbacks."""
    with VhostUserFrontend.connect(sock_path) as fe:
        answers = []

        def map_from_callback(_first) -> None:
            ask = f"map {host_file} 0 {MIB} ro".encode()
            answers.append(fe.submit(REQUEST_QUEUE, ask, 64).result(30))

        fe.submit(REQUEST_QUEUE, b"first", 64).add_done_callback(map_from_callback)
        wait_until(lambda: answers, "the guest's answers")
        assert answers == [b"ok"]
        assert maps_entry(fe.window.base) == ("r--s", str(host_file))


@pytest.mark.parametrize("advertised", [3, (3 << 20) + 5, (1 << 63) + (2 << 20)])
def test_bad_advertised_window_is_a_protocol_error(
    thread_backend, sock_path: str, advertised: int
) -> None:
    """A window size no guest can use is the back-end's fault: EPROTO, not a ValueError."""
    thread_backend(window_size=advertised)
    with pytest.raises(OSError) as info:
        VhostUserFrontend.connect(sock_path)
    assert info.value.errno == errno.EPROTO
    assert str(advertised) in str(info.value)


def test_mem_table_echoing_a_donated_file_is_not_guest_memory(
    process_backend, sock_path: str, host_file: Path
) -> None:
    """A VMM whose window mappings are guest RAM to it (QEMU 11.1) lists each donated file in
    its next SET_MEM_TABLE: the back-end neither maps it (a host truncation would SIGBUS the
    daemon) nor refuses the table as non-memfd guest memory, and the rings keep serving."""
    with VhostUserFrontend.connect(sock_path) as fe:
        def ask(words: str) -> bytes:
            return fe.submit(REQUEST_QUEUE, words.encode(), 64).result(10)

        assert ask(f"map {host_file} 0 {2 * MIB} ro") == b"ok"
        ram = MEM_REGION.pack(0, fe.memory.size, fe.memory.base, 0)
        window = MEM_REGION.pack(1 << 32, 2 * MIB, fe.window.base, 0)
        with open(host_file, "rb") as donated:
            fe._set(Request.SET_MEM_TABLE, MEM_TABLE_HEAD.pack(2, 0) + ram + window,
                    (fe.memory.fd, donated.fileno()))
        assert ask("after") == b"echo:after"
        assert ask(f"unmap 0 {2 * MIB}") == b"ok"
