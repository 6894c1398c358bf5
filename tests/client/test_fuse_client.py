"""The FUSE client's waiting: no deadline unless asked for, ETIMEDOUT when one passes,
and a request that outlived its deadline does not confuse the next ones. The back-end is
the real pagefs-host, made slow by stopping it (SIGSTOP) while a request is in flight."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
from pagefs_waits import all_stopped, signal_tree, wait_until

from pagefs.impl import protocol as p
from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.protocol.constants import FUSE_ROOT_ID


def test_a_per_call_timeout_is_etimedout_and_the_late_reply_is_dropped(tmp_path: Path) -> None:
    with host_daemon(str(tmp_path)) as host, FuseClient.connect(
        host.socket_path, window_size=0
    ) as client:
        assert client.timeout is None  # a slow FSYNC is in flight, not failed
        signal_tree(host.pid, signal.SIGSTOP)
        wait_until(lambda: all_stopped(host.pid), "pagefs-host to stop")
        try:
            with pytest.raises(OSError) as err:
                client.call(p.Opcode.GETATTR, FUSE_ROOT_ID, p.GetattrIn(), timeout=0.2)
            assert err.value.errno == errno.ETIMEDOUT
        finally:
            signal_tree(host.pid, signal.SIGCONT)
        assert client.getattr(FUSE_ROOT_ID).attr.ino == os.stat(tmp_path).st_ino
