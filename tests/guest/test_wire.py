"""The guest driver against the real pagefs-host over vhost-user: the named
properties a guest can observe, on real host files."""

from __future__ import annotations

import errno
import os
import random
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from pagefs.impl.client.host_daemon import HostDaemon, host_daemon
from pagefs.impl.guest.connect import connect
from pagefs.impl.guest.memprobe import memory_per_guest
from pagefs.impl.guest.share import Share

MiB = 1024 * 1024
RANGE = 2 * MiB


def _host_file(export: Path, name: str, size: int) -> Path:
    path = export / name
    path.write_bytes(bytes(i % 253 for i in range(size)))
    return path


def test_coh_read_host_writes_are_seen_through_mapping_and_read(share: Share, export: Path):
    path = _host_file(export, "coh-read", 3 * MiB)
    with share.open("coh-read") as f, share.mmap(f, 0, 3 * MiB) as m:
        assert m[RANGE : RANGE + 3] == bytes(i % 253 for i in range(RANGE, RANGE + 3))
        fd = os.open(path, os.O_WRONLY)
        os.pwrite(fd, b"host-update", RANGE)
        os.close(fd)
        assert m[RANGE : RANGE + 11] == b"host-update"
        assert f.pread(11, RANGE) == b"host-update"


def test_coh_write_guest_stores_reach_the_host_without_msync(share: Share, export: Path):
    path = _host_file(export, "coh-write", 3 * MiB)
    with share.open("coh-write", os.O_RDWR) as f:
        with share.mmap(f, 0, 3 * MiB, writable=True) as m:
            m[RANGE - 3 : RANGE + 3] = b"STORE!"  # across two window ranges
            assert os.pread(os.open(path, os.O_RDONLY), 6, RANGE - 3) == b"STORE!"
        assert f.pwrite(b"pwrite", 100) == 6  # in-EOF: a store through the window too
    assert path.read_bytes()[100:106] == b"pwrite"


PEER = textwrap.dedent(
    """
    import os, sys
    from pagefs.impl.guest.connect import connect
    with connect(sys.argv[1], window_size=16 << 20) as share:
        with share.open(sys.argv[2], os.O_RDWR) as f, share.mmap(f, 0, 8192, True) as m:
            print("ready", flush=True)
            sys.stdin.readline()
            print(m[0:8].decode(), flush=True)  # what the other guest stored
            m[8:16] = b"FROMPEER"
            print("stored", flush=True)
            sys.stdin.readline()
    """
)


def test_coh_peer_two_guest_processes_share_a_writable_mapping(
    share: Share, host: HostDaemon, export: Path
):
    _host_file(export, "coh-peer", 8192)
    peer = subprocess.Popen(
        [sys.executable, "-c", PEER, host.socket_path, "coh-peer"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        with share.open("coh-peer", os.O_RDWR) as f, share.mmap(f, 0, 8192, True) as m:
            assert peer.stdout.readline() == "ready\n"
            m[0:8] = b"FROMHERE"
            peer.stdin.write("go\n")
            peer.stdin.flush()
            assert peer.stdout.readline() == "FROMHERE\n"
            assert peer.stdout.readline() == "stored\n"
            assert m[8:16] == b"FROMPEER"
            peer.stdin.write("done\n")
            peer.stdin.flush()
        assert peer.wait(timeout=30) == 0
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()


def test_eof_fault_host_truncate_under_a_live_mapping(share: Share, export: Path):
    path = _host_file(export, "eof-fault", 3 * RANGE)
    with share.open("eof-fault", os.O_RDWR) as f, share.mmap(f, 0, 3 * RANGE, True) as m:
        os.truncate(path, RANGE + 10)
        with pytest.raises(OSError) as err:
            m.read(2 * RANGE, 100)  # a page wholly beyond the end
        assert err.value.errno == errno.EFAULT
        with pytest.raises(OSError) as err:
            m[2 * RANGE] = 1
        assert err.value.errno == errno.EFAULT
        tail = m.read(RANGE, 8192)  # short: the last page reads, its tail as zeros
        assert len(tail) == 4096 and tail[10:] == bytes(4086)
        assert m.size == RANGE + 10
        assert m.write(RANGE, b"z" * 8192) == 10  # only bytes before the end count
        assert f.pread(100, RANGE) == b"z" * 10
        # The guest keeps working: writes past the end grow the file by WRITE, and
        # the same mapping sees the pages again.
        assert f.pwrite(b"back", 2 * RANGE) == 4
        assert m[2 * RANGE : 2 * RANGE + 4] == b"back"
        assert path.stat().st_size == 2 * RANGE + 4


def test_reads_through_a_small_window_reclaim_ranges(host: HostDaemon, export: Path):
    size = 5 * RANGE + 123
    data = _host_file(export, "reclaim", size).read_bytes()
    with connect(host.socket_path, window_size=2 * RANGE) as share:
        with share.open("reclaim") as f:
            assert f.read() == data  # six file ranges through a window of two
            # The last two file ranges hold the window: the others were reclaimed.
            assert set(share.window.mapped(f.nodeid)) == {4 * RANGE, 5 * RANGE}


def test_read_only_handle_gets_no_writable_mapping(share: Share, export: Path):
    _host_file(export, "ro", 4096)
    with share.open("ro") as f:
        with pytest.raises(OSError) as err:
            share.mmap(f, 0, 4096, writable=True)
        assert err.value.errno == errno.EACCES


def _tree(root: Path) -> dict[str, bytes | str | None]:
    """Every entry under `root`: file bytes, symlink target, or None for a directory."""
    tree: dict[str, bytes | str | None] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            tree[key] = os.readlink(path)
        elif path.is_dir():
            tree[key] = None
        else:
            tree[key] = path.read_bytes()
    return tree


def test_read_only_export_refuses_every_write_path(tmp_path: Path):
    """Each write path of the Share API on a --read-only export: the host refuses with
    EROFS what reaches it; what the guest can refuse itself (writing through a handle
    opened for reading) it refuses with EBADF or EACCES. The host tree is unchanged."""
    (tmp_path / "f").write_bytes(b"read me")
    (tmp_path / "d").mkdir()
    before = _tree(tmp_path)
    with host_daemon(str(tmp_path), read_only=True) as daemon:
        with connect(daemon.socket_path, window_size=4 * MiB) as share:
            assert share.read_file("f") == b"read me"
            refused_by_host = [
                lambda: share.open("f", os.O_RDWR),
                lambda: share.open("f", os.O_WRONLY),
                lambda: share.open("f", os.O_RDONLY | os.O_TRUNC),
                lambda: share.open("new", os.O_WRONLY | os.O_CREAT),
                lambda: share.write_file("f", b"x"),
                lambda: share.truncate("f", 0),
                lambda: share.mkdir("d2"),
                lambda: share.rmdir("d"),
                lambda: share.unlink("f"),
                lambda: share.rename("f", "g"),
                lambda: share.symlink("f", "link"),
            ]
            for attempt in refused_by_host:
                with pytest.raises(OSError) as err:
                    attempt()
                assert err.value.errno == errno.EROFS
            with share.open("f") as f:
                for attempt, code in [
                    (lambda: f.write(b"x"), errno.EBADF),
                    (lambda: f.pwrite(b"x", 0), errno.EBADF),
                    (lambda: share.truncate(f, 0), errno.EINVAL),
                    (lambda: share.mmap(f, 0, 4096, writable=True), errno.EACCES),
                ]:
                    with pytest.raises(OSError) as err:
                        attempt()
                    assert err.value.errno == code
    assert _tree(tmp_path) == before


def test_single_copy_guests_share_the_host_pages_where_read_copies(host: HostDaemon, export):
    size = 8 * MiB
    (export / "shared").write_bytes(os.urandom(size))
    through_window = memory_per_guest(host.socket_path, "shared", 3, "window")
    by_read = memory_per_guest(host.socket_path, "shared", 3, "read")
    # Every guest read all 8 MiB either way; only READ left a private copy behind.
    assert all(added < size // 8 for added in through_window), through_window
    assert all(added > size * 9 // 10 for added in by_read), by_read


def test_threads_reading_through_a_contended_window_get_the_right_bytes(
    host: HostDaemon, export: Path
):
    data = _host_file(export, "contended", 6 * RANGE)
    data_bytes = data.read_bytes()
    errors: list[BaseException] = []
    with connect(host.socket_path, window_size=2 * RANGE) as share:
        with share.open("contended") as f:

            def reader(seed: int) -> None:
                rng = random.Random(seed)
                try:
                    for _ in range(60):
                        offset = rng.randrange(6 * RANGE - 10_000)
                        assert f.pread(10_000, offset) == data_bytes[offset : offset + 10_000]
                except BaseException as err:  # reported by the main thread
                    errors.append(err)

            threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    assert not errors, errors[0]


def test_a_replaced_file_keeps_its_mapping_and_the_new_name_maps_the_new_file(
    share: Share, export: Path
):
    (export / "swap").write_bytes(b"old" * 1000)
    with share.open("swap") as old, share.mmap(old, 0, 3000) as m:
        (export / "swap").unlink()  # LIFETIME: the mapping keeps the old file
        (export / "swap").write_bytes(b"new" * 2000)
        with share.open("swap") as new:
            assert new.nodeid != old.nodeid
            assert new.pread(6, 0) == b"newnew"  # through its own window ranges
            assert share.stat("swap").st_size == 6000  # COH-META: asked, so current
        assert m[0:6] == b"oldold" and old.pread(6, 2994) == b"oldold"


def test_a_mapping_used_after_disconnect_fails_cleanly(host: HostDaemon, export: Path):
    _host_file(export, "after", 8192)
    share = connect(host.socket_path, window_size=4 * MiB)
    m = share.mmap(share.open("after"), 0, 8192)
    share.disconnect()
    for access in (lambda: m.read(0, 10), lambda: m.read_into(0, bytearray(10)),
                   lambda: m[0], m.unsafe_views):
        with pytest.raises(OSError) as err:
            access()
        assert err.value.errno == errno.ENOTCONN
    m.close()


def test_a_window_not_in_whole_ranges_is_a_protocol_error(tmp_path: Path, export: Path):
    """pagefs-host refuses such a --window-size, so serve the real dispatcher from a
    back-end that advertises 3 MiB + 4 KiB: the guest must say EPROTO, not ValueError."""
    from pagefs.impl.host.dispatch import Dispatcher
    from pagefs.impl.host.passthrough import PassthroughFS
    from pagefs.impl.transport.backend import VhostUserBackend

    path = str(tmp_path / "odd-window.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    fs = PassthroughFS(str(export))

    def serve() -> None:
        conn, _ = listener.accept()
        backend = VhostUserBackend(conn, window_size=3 * MiB + 4096)
        backend.serve(Dispatcher(fs.session(), mapper=backend).handle)

    server = threading.Thread(target=serve)
    server.start()
    try:
        with pytest.raises(OSError) as err:
            connect(path)
        assert err.value.errno == errno.EPROTO
    finally:
        server.join()  # serve() ends when the refused guest hangs up
        listener.close()
        fs.close()
