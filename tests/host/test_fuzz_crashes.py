"""`make fuzz` (pagefs/fuzz.py) against a daemon with a seeded crash: the worker serving
the fuzzed guest dies on one request, and the fuzzer counts that crash on that very
request, though the daemon logs the death only when it reaps the worker, after the
guest has already seen its connection close. A guest dropped without a crash counts
none."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from pagefs_waits import exited, wait_until

from pagefs import fuzz
from pagefs.impl import protocol as p
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.protocol import constants as c

# pagefs-host whose MKDIR of "crash" kills the worker serving it (SIGABRT), as a bug in
# the daemon would: the seeded crash the fuzzer must find and pin on its input.
CRASHING_HOST = (sys.executable, "-c", """
import os, sys
from pagefs.impl.host import daemon, passthrough
real = passthrough.GuestSession.mkdir
def mkdir(self, parent, name, mode):
    if name == b"crash":
        os.abort()
    return real(self, parent, name, mode)
passthrough.GuestSession.mkdir = mkdir
sys.exit(daemon.main(sys.argv[1:]))
""")


def _mkdir(name: bytes) -> bytes:
    return p.encode_request(p.Request(c.Opcode.MKDIR, 9, 1, p.MkdirIn(0o755, name), 0, 0, 1))


def test_a_workers_crash_is_pinned_on_the_request_it_died_on(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x" * 4096)
    (tmp_path / "dir").mkdir()
    figures = fuzz.Figures()
    with host_daemon(str(tmp_path), log_level="err", program=CRASHING_HOST) as host:
        guest = fuzz.FuzzedGuest(host)
        try:
            first = guest.worker
            assert first is not None
            for k in range(3):  # ordinary requests, and the crash right after them
                guest.send(_mkdir(b"d%d" % k), figures)
            guest.send(_mkdir(b"crash"), figures)
            assert figures.crashes == 1 and figures.crash_inputs == [_mkdir(b"crash").hex()]
            assert f"(pid {first}) was killed by SIGABRT" in host.log()
            assert guest.worker not in (None, first)
            guest.send(_mkdir(b"after"), figures)  # a new guest carries on
            assert (tmp_path / "after").is_dir()
            # dropped, not crashed: its worker ends cleanly, no crash is counted
            os.kill(guest.worker, signal.SIGTERM)
            wait_until(lambda: exited(guest.worker), "the worker to end", process=host)
            guest.send(_mkdir(b"dropped"), figures)
            assert figures.guests_dropped == 2 and figures.crashes == 1
        finally:
            guest.close(figures)
    assert figures.crashes == 1 and figures.messages == 6
