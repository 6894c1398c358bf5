"""bench-wire's share of front-end reply waits that slept, on a real daemon and front-end."""

from __future__ import annotations

from pathlib import Path

import wire

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.protocol.constants import FUSE_ROOT_ID


def test_a_front_end_that_never_spins_sleeps_in_every_wait(tmp_path: Path) -> None:
    """With spin_ns=0 every reply a wait did not find at once is slept for: the row says
    (nearly) 100 %, beside the measure's own figures, kept as they were. A reply that
    lands between the wait's start and its arming is not slept for, hence 'nearly'; the
    Python dispatcher takes tens of us per GETATTR, far longer than that gap."""
    with host_daemon(str(tmp_path), log_level="warn", options=("--dispatch", "python")) as d, \
            FuseClient.connect(d.socket_path, window_size=0, spin_ns=0) as client:
        def measure() -> dict[str, float]:
            for _ in range(20):
                client.getattr(FUSE_ROOT_ID)
            return {"own": 1.0}

        out = wire.with_slept_share("python", client, measure)()
    assert out["own"] == 1.0
    assert 90 <= out[f"{wire.SLEPT} -> python"] <= 100
