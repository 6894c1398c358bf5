"""Fixtures of the transport tests: back-ends on real unix sockets, in a thread of this
process or in a process of their own, and an fd census to catch leaks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pagefs.impl.transport._vring import lib
from pagefs.impl.transport.backend import VhostUserBackend

HERE = Path(__file__).parent
WINDOW_SIZE = 16 << 20
ANY_LOAD = 1 << 20  # CPUs for spinning to count on: more than any machine's runnable threads


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


class ThreadBackend:
    """A VhostUserBackend serving one connection on a thread, with `handle` as handler
    (`options` go to VhostUserBackend)."""

    def __init__(self, path: str, handle: Callable[[bytes], bytes | None], window_size: int,
                 **options: object):
        self.path = path
        self._options = options
        self.backend: VhostUserBackend | None = None
        self.ready = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self._thread = threading.Thread(target=self._run, args=(handle, window_size))
        self._thread.start()

    def _run(self, handle, window_size) -> None:
        conn, _ = self._listener.accept()
        self._listener.close()
        self.backend = VhostUserBackend(conn, window_size=window_size,
                                        **self._options)  # type: ignore[arg-type]
        self.ready.set()
        self.backend.serve(handle)

    def join(self, timeout: float = 10) -> bool:
        """True once serve() has returned."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        if self.backend is not None:
            self.backend.stop()
        else:
            # nobody connected: wake accept() by connecting ourselves
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(self.path)
        assert self.join(), "back-end thread did not end"


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "vhost-user.sock")


@pytest.fixture
def thread_backend(sock_path: str) -> Iterator[Callable[..., ThreadBackend]]:
    started: list[ThreadBackend] = []

    def start(handle=lambda request: b"echo:" + request, window_size=WINDOW_SIZE, **options):
        tb = ThreadBackend(sock_path, handle, window_size, **options)
        started.append(tb)
        return tb

    yield start
    for tb in started:
        tb.stop()


@contextmanager
def helper_process(script: str, *args: str, first_line: str) -> Iterator[subprocess.Popen]:
    """Runs tests/transport/<script> and waits for its first line; kills it at the end."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == first_line
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.fixture
def process_backend(sock_path: str) -> Iterator[subprocess.Popen]:
    """tests/transport/echo_backend.py in its own process (it serves one connection on
    `sock_path` and exits when that ends)."""
    with helper_process(
        "echo_backend.py", sock_path, str(WINDOW_SIZE), first_line="ready"
    ) as proc:
        yield proc
        proc.wait(10)


@pytest.fixture
def spin_whatever_else_runs() -> Iterator[None]:
    """The adaptive poller's budget rules, apart from its load gate (the test machine may
    be busy): spinning counts on more CPUs than anything could take, then on the default."""
    lib.poller_count_on_cpus(ANY_LOAD)
    yield
    lib.poller_count_on_cpus(0)
