"""pagefs-host's C fast path on the real wire: the frequent requests are answered by it
(its count is in the disconnect log line), with the same answers as --dispatch python,
where none is."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.protocol.constants import FUSE_ROOT_ID

from .conftest import wait_until

SERVED = re.compile(r"(\d+) requests answered by the C fast path")


def _session(socket_path: str) -> list[object]:
    """A guest's frequent requests; what each answered, times left out."""
    with FuseClient.connect(socket_path, window_size=0) as client:
        entry = client.lookup(FUSE_ROOT_ID, b"f")
        fh = client.open(entry.nodeid, os.O_RDWR).fh
        written = client.write(entry.nodeid, fh, 2, b"XY")
        data = client.read(entry.nodeid, fh, 0, 100)
        size = client.getattr(entry.nodeid, fh).attr.size
        client.release(entry.nodeid, fh)
        for _ in range(20):
            client.getattr(FUSE_ROOT_ID)
        return [entry.nodeid, entry.generation, fh, written, data, size]


@pytest.mark.parametrize("dispatch", ["fast", "python"])
def test_the_fast_path_answers_on_the_wire(tmp_path: Path, dispatch: str) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    with host_daemon(str(tmp_path), options=("--dispatch", dispatch)) as host:
        answers = _session(host.socket_path)

        wait_until(lambda: SERVED.search(host.log()), host, "the disconnect's log line")
        found = SERVED.search(host.log())
        assert found is not None
        served = int(found.group(1))
    assert answers == [2, 2, 1, 2, b"01XY456789", 10]
    if dispatch == "fast":
        assert served >= 26, "LOOKUP, OPEN, WRITE, READ, GETATTRs, RELEASE in C"
    else:
        assert served == 0
