"""A worker process per guest (--workers process, the default; impl/host/workers.py):
the daemon's own process stays one thread (forking it is safe), each guest is served by
a child of it, a worker killed with SIGKILL drops its guest alone while another guest's
requests go on, --max-guests counts guests across the workers, and no worker outlives the
daemon, whether it stops cleanly or is killed."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from pathlib import Path

import pytest
from pagefs_waits import children, exited, wait_until

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import HostDaemon, HostDaemonError, host_daemon
from pagefs.impl.protocol.constants import FUSE_ROOT_ID

from .conftest import WINDOW_SIZE


def _new_worker(host: HostDaemon, before: list[int]) -> int:
    """The worker forked since `before` was taken."""
    found: list[int] = []

    def forked() -> bool:
        found[:] = sorted(set(children(host.pid)) - set(before))
        return len(found) == 1

    wait_until(forked, "the guest's worker", process=host)
    return found[0]


def test_a_killed_worker_drops_its_guest_alone(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    with host_daemon(str(tmp_path)) as host, \
            FuseClient.connect(host.socket_path, window_size=WINDOW_SIZE) as doomed:
        doomed_worker = _new_worker(host, [])
        with FuseClient.connect(host.socket_path, window_size=WINDOW_SIZE) as steady:
            steady_worker = _new_worker(host, [doomed_worker])
            assert os.listdir(f"/proc/{host.pid}/task") == [str(host.pid)]
            node = steady.lookup(FUSE_ROOT_ID, b"f").nodeid
            fh = steady.open(node, os.O_RDWR).fh
            doomed.lookup(FUSE_ROOT_ID, b"f")
            os.kill(doomed_worker, signal.SIGKILL)
            wait_until(lambda: "guest 1 dropped: its worker" in host.log(),
                       "the worker's death in the log", process=host)
            assert f"(pid {doomed_worker}) was killed by SIGKILL" in host.log()
            with pytest.raises(ConnectionError):
                doomed.getattr(FUSE_ROOT_ID)
            for k in range(50):  # the other guest's requests, C path and Python's alike
                assert steady.write(node, fh, 0, b"%02d" % k) == 2
                assert steady.read(node, fh, 0, 3) == b"%02d2" % k
                assert steady.statfs().namelen > 0
            assert children(host.pid) == [steady_worker] and host.alive()
        wait_until(lambda: "guest 2 disconnected" in host.log(), "guest 2 to go", process=host)
    assert exited(steady_worker) and exited(doomed_worker)


def test_max_guests_counts_the_guests_of_every_worker(tmp_path: Path) -> None:
    with host_daemon(str(tmp_path), max_guests=2) as host:
        first = FuseClient.connect(host.socket_path, window_size=0)
        worker = _new_worker(host, [])
        with FuseClient.connect(host.socket_path, window_size=0) as second:
            _new_worker(host, [worker])
            with socket.socket(socket.AF_UNIX) as third:
                third.connect(host.socket_path)
                assert third.recv(1) == b""  # refused: two guests hold both slots
            assert "refused connection" in host.log() and len(children(host.pid)) == 2
            os.kill(worker, signal.SIGKILL)  # a crash frees its guest's slot
            with pytest.raises(ConnectionError):
                first.getattr(FUSE_ROOT_ID)
            first.close()
            wait_until(lambda: "guest 1 dropped" in host.log(), "guest 1 to go", process=host)
            with FuseClient.connect(host.socket_path, window_size=0) as late:
                assert late.getattr(FUSE_ROOT_ID).attr.ino == os.stat(tmp_path).st_ino
            assert second.getattr(FUSE_ROOT_ID).attr.ino == os.stat(tmp_path).st_ino


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_no_worker_outlives_the_daemon(tmp_path: Path, how: str) -> None:
    """SIGTERM: the daemon stops every worker before it exits; SIGKILL: each worker's
    parent-death signal ends it."""
    workers: list[int] = []
    guests: list[FuseClient] = []
    try:
        with host_daemon(str(tmp_path)) as host:
            for _ in range(3):
                guests.append(FuseClient.connect(host.socket_path, window_size=0))
                workers.append(_new_worker(host, workers))
            if how == "SIGTERM":
                assert host.stop() == 0
            else:
                with pytest.raises(HostDaemonError):  # killed: reported as such
                    host.stop(signal.SIGKILL)
        for worker in workers:
            wait_until(lambda w=worker: exited(w), f"worker {worker} to exit")
    finally:
        for guest in guests:
            guest.close()


def test_a_signal_to_a_guests_worker_ends_that_guest_cleanly(tmp_path: Path) -> None:
    """SIGTERM to any thread of a worker (a process-directed signal may land on any)
    releases its guest as a disconnect does; the daemon serves on."""
    tgkill = ctypes.CDLL(None, use_errno=True).tgkill
    with host_daemon(str(tmp_path)) as host:
        with FuseClient.connect(host.socket_path, window_size=0) as guest:
            worker = _new_worker(host, [])
            guest.getattr(FUSE_ROOT_ID)
            threads = sorted(int(t) for t in os.listdir(f"/proc/{worker}/task"))
            assert tgkill(worker, threads[-1], signal.SIGTERM) == 0
            wait_until(lambda: exited(worker), "the worker to exit", process=host)
            assert "guest 1 disconnected; released 1 nodeids" in host.log()
            assert "guest 1 dropped" not in host.log()
        with FuseClient.connect(host.socket_path, window_size=0) as other:
            assert other.getattr(FUSE_ROOT_ID).attr.ino == os.stat(tmp_path).st_ino
