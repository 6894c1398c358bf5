"""Waiting in tests without timed assertions: poll until a condition holds, with no
deadline of our own (pytest-timeout bounds every test), failing early only when the
process we wait on has died.

tests/conftest.py puts this folder on sys.path, so any test folder imports it as
`from pagefs_waits import ...` whatever pytest's import mode.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Protocol

# the tests take these from here, with the waits
from pagefs.impl.client.child import children as children
from pagefs.impl.client.child import exited as exited

POLL_SECONDS = 0.01


class Watched(Protocol):
    """A process a wait depends on (HostDaemon is one)."""

    def alive(self) -> bool: ...

    def log(self) -> str: ...


def wait_until(condition: Callable[[], object], what: str, *,
               process: Watched | subprocess.Popen | None = None) -> None:
    """Poll `condition` until it is true; fail at once if `process` dies meanwhile."""
    while not condition():
        if isinstance(process, subprocess.Popen):
            assert process.poll() is None, (f"process died waiting for {what}: "
                                             f"{process.communicate()[1]}")
        elif process is not None:
            assert process.alive(), f"process died waiting for {what}:\n{process.log()}"
        time.sleep(POLL_SECONDS)


def assert_next_guest_taken(host: Watched, socket_path: str, number: int) -> None:
    """A new connection is taken as guest `number`, not refused: judged by the daemon's
    log, not by a whole handshake that must itself beat the daemon's deadline."""
    with socket.socket(socket.AF_UNIX) as guest:
        guest.connect(socket_path)
        wait_until(lambda: f"guest {number} connected" in host.log(),
                   f"guest {number} connected", process=host)
    assert "refused connection" not in host.log()


def assert_child_dies_with_holder(script: str, *args: str) -> None:
    """Run `script` (Python) in a process of its own; it starts a daemon, prints the
    daemon's pid, and waits. Kill that process with SIGTERM: the daemon must go too.
    The holder's temporary directories go into one of ours (its TMPDIR, short enough for
    a socket path): killed, it never runs the cleanup that would remove them."""
    scratch = tempfile.mkdtemp(prefix="pagefs-holder-")
    holder = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True,
                              env={**os.environ, "TMPDIR": scratch})
    daemon_pid = None
    try:
        line = holder.stdout.readline()
        assert line.strip().isdigit(), f"holder printed {line!r}, exit {holder.poll()}"
        daemon_pid = int(line)
        holder.send_signal(signal.SIGTERM)
        holder.wait()
        wait_until(lambda: exited(daemon_pid), f"pid {daemon_pid} to exit with its holder")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
        if daemon_pid is not None and not exited(daemon_pid):
            os.kill(daemon_pid, signal.SIGKILL)  # the orphan this test caught
        shutil.rmtree(scratch, ignore_errors=True)


def tree_fds(pid: int) -> int:
    """Descriptors held by `pid` and its children: pagefs-host and its guests' workers,
    where a guest's nodeids and handles are."""
    total = 0
    for process in [pid, *children(pid)]:
        with suppress(FileNotFoundError):
            total += len(os.listdir(f"/proc/{process}/fd"))
    return total


def signal_tree(pid: int, signum: int) -> None:
    """`signum` to `pid` and to its children: a daemon and its guests' workers."""
    for target in [pid, *children(pid)]:
        with suppress(ProcessLookupError):
            os.kill(target, signum)


def all_stopped(pid: int) -> bool:
    """Every thread of `pid` and of its children has stopped (SIGSTOP reaches them one by
    one)."""
    states = []
    for process in [pid, *children(pid)]:
        for task in Path(f"/proc/{process}/task").iterdir():
            states.append((task / "stat").read_text().rpartition(")")[2].split()[0])
    return all(state in ("T", "t") for state in states)
