"""Project-wide test settings.

Hypothesis runs derandomized under CI (CI=true), so a red run reproduces exactly;
locally it explores fresh examples each run. Fixtures that belong to one layer
live in that layer's folder (tests/<layer>/conftest.py).
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from pagefs.impl.client.host_daemon import HostDaemon, host_daemon

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# Helpers shared by the test folders (tests/pagefs_waits.py), importable under importlib mode.
sys.path.insert(0, os.path.dirname(__file__))


INSTALL_RUST_VIRTIOFSD = Path(__file__).resolve().parents[1] / "scripts" / "install-virtiofsd-rust"


@pytest.fixture(scope="session")
def rust_virtiofsd() -> str:
    """The Rust virtiofsd, installed into the cache when missing (make virtiofsd-rust); a
    machine that cannot fetch it fails the test with the installer's one line."""
    done = subprocess.run([str(INSTALL_RUST_VIRTIOFSD)], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        pytest.fail(done.stderr.strip() or "install-virtiofsd-rust failed")
    return done.stdout.strip()


@pytest.fixture
def host(export: Path) -> Iterator[HostDaemon]:
    """A real pagefs-host on a real socket, serving the `export` fixture of the test's own
    folder (each layer lays out its export as its tests need)."""
    with host_daemon(str(export)) as daemon:
        yield daemon
