"""Child processes a block starts end with it, even when the block fails half-way."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pagefs_waits import exited

from pagefs.impl.client.child import reaped, rss_kib


def _sleeper() -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            stdout=subprocess.PIPE, text=True)


def test_a_failing_block_leaves_no_child_running() -> None:
    with pytest.raises(RuntimeError), reaped([_sleeper(), _sleeper()]) as children:
        raise RuntimeError("the block failed half-way")
    assert all(child.returncode is not None for child in children)  # killed and reaped
    assert all(child.stdout is not None and child.stdout.closed for child in children)


def test_a_child_that_ended_keeps_its_own_exit_status() -> None:
    done = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"],
                            stdout=subprocess.PIPE, text=True)
    with reaped([done]):
        assert done.wait() == 3
    assert done.returncode == 3


def test_resident_memory_of_a_live_child_and_of_a_zombie() -> None:
    with reaped([subprocess.Popen([sys.executable, "-c", "print('up', flush=True); input()"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 ]) as (child,):
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        assert rss_kib(child.pid) > 1024  # a running Python interpreter holds over a MiB
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, left unreaped
        assert exited(child.pid)
        assert rss_kib(child.pid) == 0
