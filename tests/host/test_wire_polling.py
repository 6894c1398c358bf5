"""pagefs-host's adaptive polling on the real wire: after back-to-back requests an idle
daemon burns no CPU (its run time over a sleep, from /proc), the hiprio queue never spins,
and the counters in the disconnect log add up."""

from __future__ import annotations

import ast
import os
import re
import time
from pathlib import Path

import pytest
from pagefs_waits import children

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.protocol.constants import FUSE_ROOT_ID

from .conftest import wait_until

STOPPED = re.compile(r"queue (\d+) stopped: (\{.*\})")
IDLE_SECONDS = 1.0


def _cpu_seconds(pid: int) -> float:
    """User and system time of every thread of `pid` and of its children, the guests'
    worker processes (/proc/PID/stat)."""
    total = 0
    for process in [pid, *children(pid)]:
        with open(f"/proc/{process}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("options", [("--dispatch", "fast"), ("--dispatch", "python"),
                                     ("--workers", "thread")])
def test_an_idle_daemon_burns_no_cpu_after_back_to_back_requests(
        tmp_path: Path, options: tuple[str, ...]) -> None:
    (tmp_path / "f").write_bytes(b"x" * 4096)
    with host_daemon(str(tmp_path), options=options) as host:
        with FuseClient.connect(host.socket_path, window_size=0) as client:
            for _ in range(300):  # GETATTR, and the LOOKUP+FORGET pattern (hiprio)
                client.getattr(FUSE_ROOT_ID)
                client.forget(client.lookup(FUSE_ROOT_ID, b"f").nodeid, 1)
            client.settle()
            time.sleep(0.1)  # past any spin's ceiling
            before = _cpu_seconds(host.pid)
            time.sleep(IDLE_SECONDS)
            idle = _cpu_seconds(host.pid) - before
        wait_until(lambda: len(STOPPED.findall(host.log())) == 2, host,
                   "the queues' log lines")
        stats = {int(q): ast.literal_eval(text) for q, text in STOPPED.findall(host.log())}
    assert idle <= 0.05 * IDLE_SECONDS, f"{idle:.3f} s of CPU in {IDLE_SECONDS} s idle"
    hiprio, requests = stats[0], stats[1]
    assert hiprio["served"] + hiprio["passed"] == 300  # every FORGET
    assert hiprio["spin_ns"] == 0 and hiprio["spun"] == 0  # FORGETs have no waiter
    assert requests["served"] + requests["passed"] >= 600
    for queue in stats.values():
        assert queue["spun"] + queue["slept"] <= queue["waits"]
        assert queue["contended"] <= queue["waits"]


def test_spin_us_zero_never_spins(tmp_path: Path) -> None:
    with host_daemon(str(tmp_path), options=("--spin-us", "0")) as host:
        with FuseClient.connect(host.socket_path, window_size=0) as client:
            for _ in range(100):
                client.getattr(FUSE_ROOT_ID)
        wait_until(lambda: len(STOPPED.findall(host.log())) == 2, host,
                   "the queues' log lines")
        stats = [ast.literal_eval(text) for _, text in STOPPED.findall(host.log())]
    assert all(queue["spin_ns"] == 0 and queue["budget_ns"] == 0 for queue in stats)
