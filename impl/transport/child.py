"""Child processes that die with the process that started them.

A daemon started for a `with` block (pagefs-host, virtiofsd) is stopped when the block
ends; but if whoever holds the block is killed (SIGTERM, SIGKILL), nothing runs to stop
it and it would serve on with ppid 1. PR_SET_PDEATHSIG makes the kernel send the child
SIGTERM when its parent goes, so it shuts down as if told to.

    subprocess.Popen(args, preexec_fn=die_with_parent())

Linux delivers the signal when the *thread* that forked the child exits, not the whole
process: start such children from a thread that lives as long as they should.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# Looked up before any fork: the child runs only the prctl call itself.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                   ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A preexec_fn for subprocess.Popen: the child gets `signum` when this process dies."""
    parent = os.getpid()

    def arm() -> None:
        if _prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
        # the parent may have died between fork and prctl: then nobody will signal us
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return arm
