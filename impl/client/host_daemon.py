"""Start pagefs-host as a subprocess, for tests, the conformance suite and benchmarks.

    with host_daemon("/srv/share") as host:
        guest = connect_somehow(host.socket_path)
        ...
    # the daemon got SIGTERM, exited, and its socket is gone

The daemon is ready when its socket is listening (read from /proc/net/unix, so no
probe connection ever reaches it as a guest). At exit it gets SIGTERM and
`stop_timeout` seconds to go; after that it is killed. A daemon that leaves its socket
behind or dies on its own is reported as an error, with its log. If the process holding
the `with` block is killed, the daemon gets SIGTERM from the kernel (client/child.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from pagefs.impl.client.child import die_with_parent
from pagefs.impl.transport.unix_socket import is_listening


class HostDaemonError(RuntimeError):
    """pagefs-host did not start, did not stop cleanly, or left its socket behind."""


@dataclass
class HostDaemon:
    """A running pagefs-host: where to connect, and what it has logged."""

    socket_path: str
    shared_dir: str
    process: subprocess.Popen
    log_path: str
    returncode: int | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """Everything the daemon has written to stderr so far."""
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def open_fds(self) -> int:
        """How many descriptors the daemon's main process holds now. Its guests' workers
        (child processes) hold their own and are not counted: the fuzzer compares this at
        start and end, when no worker is left; tests count the whole tree (tree_fds)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the daemon, wait for it (SIGKILL after `timeout`), check its socket is
        gone; returns its exit status."""
        return stop(self, timeout, signum)

    def wait(self, timeout: float = 10.0) -> int:
        """The daemon was told to stop some other way: wait for it (SIGKILL after
        `timeout`), check its socket is gone; returns its exit status."""
        return stop(self, timeout, signum=None)


# pagefs-host from this interpreter's environment, whatever is on PATH.
PAGEFS_HOST = (sys.executable, "-m", "pagefs.impl.host.daemon")


def command(socket_path: str, shared_dir: str, *options: str,
            program: tuple[str, ...] = PAGEFS_HOST) -> list[str]:
    """The command line that runs pagefs-host (or `program`, which takes its options:
    the conformance suite's seeded-bug daemons) on `shared_dir` at `socket_path`."""
    return [*program, "--socket-path", socket_path, "--shared-dir", shared_dir, *options]


@contextmanager
def host_daemon(shared_dir: str, *, read_only: bool = False, max_guests: int | None = None,
                log_level: str = "info", options: tuple[str, ...] = (),
                start_timeout: float = 30.0, stop_timeout: float = 10.0,
                program: tuple[str, ...] = PAGEFS_HOST) -> Iterator[HostDaemon]:
    """Run pagefs-host on a fresh socket for the duration of the `with` block."""
    workdir = tempfile.mkdtemp(prefix="pagefs-host-")
    socket_path = os.path.join(workdir, "host.sock")
    log_path = os.path.join(workdir, "host.log")
    flags = ["--log-level", log_level, *options]
    if read_only:
        flags.append("--read-only")
    if max_guests is not None:
        flags += ["--max-guests", str(max_guests)]
    try:
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(command(socket_path, shared_dir, *flags,
                                               program=program),
                                       stdin=subprocess.DEVNULL, stdout=log_file,
                                       stderr=subprocess.STDOUT,
                                       preexec_fn=die_with_parent())
        host = HostDaemon(socket_path, shared_dir, process, log_path)
        try:
            _wait_listening(host, start_timeout)
            yield host
        except BaseException:
            with suppress(HostDaemonError):  # the first failure is the one to report
                stop(host, stop_timeout)
            raise
        stop(host, stop_timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_listening(host: HostDaemon, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not is_listening(host.socket_path):
        if not host.alive():
            raise HostDaemonError(f"pagefs-host exited with {host.process.returncode} "
                                  f"before listening:\n{host.log()}")
        if time.monotonic() > deadline:
            raise HostDaemonError(f"pagefs-host not listening after {timeout} s:\n{host.log()}")
        time.sleep(0.02)


def stop(host: HostDaemon, timeout: float = 10.0, signum: int | None = signal.SIGTERM) -> int:
    """Signal (unless `signum` is None: already told), wait, SIGKILL if need be; the
    socket must be gone afterwards."""
    if host.returncode is not None:
        return host.returncode
    died_early = signum is not None and not host.alive()
    if signum is not None and not died_early:
        host.process.send_signal(signum)
    try:
        host.returncode = host.process.wait(timeout)
    except subprocess.TimeoutExpired:
        host.process.kill()
        host.returncode = host.process.wait()
        _remove(host.socket_path)
        raise HostDaemonError(
            f"pagefs-host did not stop within {timeout} s:\n{host.log()}") from None
    left_socket = os.path.lexists(host.socket_path)
    _remove(host.socket_path)
    if died_early:
        raise HostDaemonError(f"pagefs-host died with {host.returncode}:\n{host.log()}")
    if left_socket:
        raise HostDaemonError(f"pagefs-host left its socket behind:\n{host.log()}")
    if host.returncode != 0:
        raise HostDaemonError(f"pagefs-host exited with {host.returncode} when stopped:\n"
                              f"{host.log()}")
    return host.returncode


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
