"""A worker process per guest (`--workers process`, the default), as virtiofsd runs one
process per VM: each guest's requests, the C fast path's and the Python dispatcher's,
run in a process of its own, so guests scale across cores (the fallbacks of one guest
never wait for another's GIL) and a crash in one guest's worker drops that guest alone.

The parent is the accept loop and nothing else: it stays single-threaded, so forking it
is safe, and it applied the sandbox before the first fork, so every worker is born in it
(procfd re-points the fd-directory descriptor in each). It enforces --max-guests by
counting slots, and reaps its workers. A slot is a pipe whose write end only the worker
holds: the worker closes it the moment its guest is gone (before its disconnect line),
and the kernel closes it if the worker dies, so a slot is free exactly when its guest
is. A worker's own death (a signal, a nonzero exit) is logged by the parent as that
guest dropped. A worker gets SIGKILL if the parent dies (PR_SET_PDEATHSIG): it has no
one left to release its slot to, and its exit releases all it holds.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable

from .syscalls import die_with_parent

log = logging.getLogger("pagefs.host")

WORKER_MODES = ("process", "thread")
# How often a stopping parent looks for workers that have exited.
REAP_POLL_SECONDS = 0.01


class Workers:
    """The parent's book of worker processes: slot pipes and pids, by guest name."""

    def __init__(self) -> None:
        self._slots: dict[int, str] = {}  # read end of a live guest's slot -> its name
        self._pids: dict[int, str] = {}  # worker not yet reaped -> its guest's name
        self._own_slot = -1  # in a worker: the write end of its slot

    def __len__(self) -> int:
        """Guests holding a slot."""
        return len(self._slots)

    @property
    def slots(self) -> list[int]:
        """Descriptors that turn readable (end of file) when their guest is gone."""
        return list(self._slots)

    def start(self, name: str, work: Callable[[], None]) -> int:
        """Fork a worker that runs `work` for guest `name`, then exits; returns its pid.
        Call it from a single-threaded process."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:  # EAGAIN at the process limit: the daemon serves on, with no pipe lost
            os.close(read_end)
            os.close(write_end)
            raise
        if pid == 0:  # the worker: never returns
            status = 0
            try:
                for fd in [read_end, *self._slots]:
                    os.close(fd)
                self._slots.clear()
                self._pids.clear()
                self._own_slot = write_end
                die_with_parent(signal.SIGKILL, parent)
                work()
            except BaseException:  # noqa: BLE001 - reported, then the worker ends
                log.exception("%s: worker failed", name)
                status = 1
            finally:
                sys.stderr.flush()
                os._exit(status)
        os.close(write_end)
        self._slots[read_end] = name
        self._pids[pid] = name
        return pid

    def release_slot(self) -> None:
        """In a worker: its guest is gone (the parent may admit another now)."""
        if self._own_slot >= 0:
            os.close(self._own_slot)
            self._own_slot = -1

    def slot_freed(self, fd: int) -> None:
        """In the parent: slot `fd` read end of file."""
        if self._slots.pop(fd, None) is not None:
            os.close(fd)

    def reap(self) -> None:
        """Collect every worker that has exited; a death not by its own choice is logged
        as its guest dropped."""
        for pid in list(self._pids):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                _report(self._pids.pop(pid), pid, status)

    def stop(self, grace: float) -> None:
        """SIGTERM every worker (each releases its guest and exits), SIGKILL those still
        there after `grace` seconds, and reap them all: no process is left behind."""
        for pid in self._pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self._pids and time.monotonic() < deadline:
            self.reap()
            time.sleep(REAP_POLL_SECONDS)
        for pid, name in self._pids.items():
            log.warning("%s's worker (pid %d) did not stop within %.0f s: killed", name, pid,
                        grace)
            _signal(pid, signal.SIGKILL)
        for pid in list(self._pids):
            os.waitpid(pid, 0)
            del self._pids[pid]
        for fd in list(self._slots):
            self.slot_freed(fd)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # exited meanwhile; reaped next


def _report(name: str, pid: int, status: int) -> None:
    if os.WIFSIGNALED(status):
        log.error("%s dropped: its worker (pid %d) was killed by %s", name, pid,
                  signal.Signals(os.WTERMSIG(status)).name)
    elif os.WEXITSTATUS(status) != 0:
        log.error("%s dropped: its worker (pid %d) exited with status %d", name, pid,
                  os.WEXITSTATUS(status))
