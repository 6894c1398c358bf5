"""Child processes: ones that die with the process that started them, ones a block reaps
at its end, and their resident memory.

A daemon started for a `with` block (pagefs-host, virtiofsd) is stopped when the block
ends; but if whoever holds the block is killed (SIGTERM, SIGKILL), nothing runs to stop
it and it would serve on with ppid 1. PR_SET_PDEATHSIG makes the kernel send the child
SIGTERM when its parent goes, so it shuts down as if told to.

    subprocess.Popen(args, preexec_fn=die_with_parent())

Linux delivers the signal when the *thread* that forked the child exits, not the whole
process: start such children from a thread that lives as long as they should.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

# Imported before any fork: the child runs only the prctl call itself.
from pagefs.impl.client._child import ffi, lib


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A preexec_fn for subprocess.Popen: the child gets `signum` when this process dies."""
    parent = os.getpid()

    def arm() -> None:
        if lib.pagefs_set_pdeathsig(signum) != 0:
            err = ffi.errno
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
        # the parent may have died between fork and prctl: then nobody will signal us
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return arm


@contextmanager
def reaped(processes: list[subprocess.Popen[str]]) -> Iterator[list[subprocess.Popen[str]]]:
    """The block's child processes, killed if still running when it ends, then reaped and
    their output pipes closed: a block that fails half-way leaves no process behind."""
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


def rss_kib(pid: int) -> int:
    """A process's resident memory in KiB, as its /proc status says (VmRSS); 0 for one that
    has exited but is not yet reaped (a zombie holds none)."""
    return status_kib(pid, "VmRSS")["VmRSS"]


def status_kib(pid: int, *fields: str) -> dict[str, int]:
    """The named KiB fields of a process's /proc status (VmRSS, RssFile, RssShmem, ...);
    0 for a field it does not show (a zombie shows none of the memory fields)."""
    found = dict.fromkeys(fields, 0)
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in found:
                found[name] = int(value.split()[0])
    return found


def children(pid: int) -> list[int]:
    """The child processes of `pid` (pagefs-host's guest workers), as every thread of it
    lists them; a child exited but not yet reaped is still one."""
    found: list[int] = []
    with suppress(FileNotFoundError):  # gone meanwhile: no children
        for task in Path(f"/proc/{pid}/task").iterdir():
            with suppress(FileNotFoundError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def exited(pid: int) -> bool:
    """`pid` is not running (gone, or a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")
