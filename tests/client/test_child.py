"""Child processes a block starts end with it, even when the block fails half-way."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pagefs.impl.client.child import reaped


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
