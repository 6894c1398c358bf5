"""A process's resident memory as memprobe reads it, for live and exited processes."""

from __future__ import annotations

import os
import subprocess
import sys

from pagefs_waits import exited

from pagefs.impl.guest.memprobe import rss_kib


def test_resident_memory_of_a_live_process_and_of_a_zombie() -> None:
    child = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); input()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "up\n"  # the interpreter is running
        assert rss_kib(child.pid) > 1024  # a Python interpreter holds over a MiB
        assert rss_kib() > 1024  # this process, by default
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, left unreaped
        assert exited(child.pid)
        assert rss_kib(child.pid) == 0
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
