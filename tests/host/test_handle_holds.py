"""The host's C fast path does a handle's I/O (preadv, pwrite, fsync) without the
session's lock, holding the handle instead (session.c's pf_handle_hold/put): a RELEASE or
a reset meanwhile takes the handle out of the table at once, but its fd is closed only
when the last I/O is done, so a descriptor number closed and reused by a later OPEN is
never read or written under the old handle. Judged on the C tables directly, and on the
real daemon with a guest's READs on its request queue racing RELEASE and OPEN on its
other queue (hiprio), the reuse detected by content."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.host._session import lib
from pagefs.impl.host.tables import Export, SessionTables
from pagefs.impl.protocol import hot
from pagefs.impl.protocol.codec import OUT_HEADER
from pagefs.impl.protocol.constants import FUSE_ROOT_ID
from pagefs.impl.protocol.virtio_fs import HIPRIO_QUEUE

SIZE = 256 << 10
ROUNDS = 300


@pytest.fixture
def tables(tmp_path: Path) -> Iterator[SessionTables]:
    yield SessionTables(Export(read_only=False, fds_per_guest=None),
                        os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))


def _is_open_on(fd: int, path: Path) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == str(path)
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["release", "reset"])
def test_a_held_handle_keeps_its_fd_until_the_last_put(
        tmp_path: Path, tables: SessionTables, how: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    st = os.fstat(fd)
    fh = tables.add_handle(fd, (st.st_dev, st.st_ino), os.O_RDONLY, False)
    with tables.locked():
        first = lib.pf_handle_hold(tables.ptr, fh)
        second = lib.pf_handle_hold(tables.ptr, fh)
    if how == "release":
        tables.remove_handle(fh)
    else:
        tables.release_all(keep_root=True)
    assert tables.handle(fh) is None and tables.counts() == (1, 0)
    lib.pf_handle_put(tables.ptr, first)
    assert _is_open_on(fd, path), "closed while an I/O still holds it"
    lib.pf_handle_put(tables.ptr, second)
    assert not _is_open_on(fd, path)


def test_the_root_is_the_nodeid_it_is_given(tmp_path: Path) -> None:
    """session.c has no root nodeid of its own: FUSE_ROOT_ID comes from the protocol's
    constants, and a session given another root keeps that one through FORGET and reset."""
    export = Export(read_only=False, fds_per_guest=None)
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    assert SessionTables(export, os.dup(root)).node(FUSE_ROOT_ID) is not None
    st = os.fstat(root)
    other = lib.pf_session_new(export.ptr, 7, root, st.st_dev, st.st_ino,
                               stat.S_IFMT(st.st_mode))
    try:
        assert lib.pf_node_get(other, 7).nodeid == 7
        lib.pf_node_forget(other, 7, 1 << 40)
        lib.pf_release_all(other, 1)
        assert lib.pf_node_get(other, 7).nlookup == 1 and lib.pf_nodes(other) == 1
        extra = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        assert lib.pf_node_add(other, extra, st.st_dev + 1, 1, stat.S_IFDIR) == 8
    finally:
        lib.pf_session_free(other)


def _on_hiprio(client: FuseClient, request: bytes) -> bytes:
    """One request sent on the guest's hiprio queue (the daemon serves any opcode there),
    so it is taken by the other queue thread than the one serving READs."""
    return client.frontend.call(HIPRIO_QUEUE, request, 4096)


def _error(reply: bytes) -> int:
    return -OUT_HEADER.unpack_from(reply)[1]


def test_a_release_racing_reads_never_lets_them_reach_a_reused_fd(tmp_path: Path) -> None:
    """Each round: READs of handle A in a loop on the request queue; meanwhile, on hiprio,
    RELEASE of A then OPEN of B (which may get A's closed descriptor number). Every READ
    answers A's bytes or EBADF, never B's; and the daemon still serves."""
    (tmp_path / "a").write_bytes(b"A" * SIZE)
    (tmp_path / "b").write_bytes(b"B" * SIZE)
    with host_daemon(str(tmp_path), log_level="warn") as host, \
            FuseClient.connect(host.socket_path, window_size=0) as guest:
        a = guest.lookup(FUSE_ROOT_ID, b"a").nodeid
        b = guest.lookup(FUSE_ROOT_ID, b"b").nodeid
        seen: dict[bytes | int, int] = {}
        for _ in range(ROUNDS):
            fh = guest.open(a, os.O_RDONLY).fh
            started, stop = threading.Event(), threading.Event()

            def reads(fh: int = fh, started: threading.Event = started,
                      stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    try:
                        got: bytes | int = guest.read(a, fh, 0, SIZE)[:1]
                    except OSError as err:
                        got = err.errno or 0
                    seen[got] = seen.get(got, 0) + 1
                    started.set()

            reader = threading.Thread(target=reads)
            reader.start()
            try:
                started.wait(30)
                unique = 1 << 40
                release = hot.RELEASE.encode(unique, a, (0, 0, 0), fh, 0, 0, 0)
                assert _error(_on_hiprio(guest, release)) == 0
                opened = _on_hiprio(guest, hot.OPEN.encode(unique + 1, b, (0, 0, 0),
                                                           os.O_RDONLY, 0))
                assert _error(opened) == 0
                fh_b = hot.parse_open(opened, len(opened), unique + 1).fh
                for _ in range(3):  # READs of A's handle after B is open
                    try:
                        guest.read(a, fh, 0, SIZE)
                    except OSError as err:
                        assert err.errno == errno.EBADF
            finally:
                stop.set()
                reader.join(30)
            assert guest.read(b, fh_b, 0, 1) == b"B"
            guest.release(b, fh_b)
        assert set(seen) <= {b"A", errno.EBADF}, f"a READ of A's handle answered {seen}"
        assert seen.get(b"A", 0) > 0 and host.alive()
