"""Fixtures for the guest driver's tests: a real pagefs-host per test (it starts in a
fraction of a second) on a fresh export, and guests connected to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pagefs.impl.client.host_daemon import HostDaemon
from pagefs.impl.guest.connect import connect
from pagefs.impl.guest.share import Share

WINDOW_SIZE = 16 * 1024 * 1024


@pytest.fixture
def export(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    root.mkdir()
    return root


@pytest.fixture
def share(host: HostDaemon) -> Iterator[Share]:
    """A guest with a DAX window."""
    with connect(host.socket_path, window_size=WINDOW_SIZE) as guest:
        yield guest


@pytest.fixture(params=[WINDOW_SIZE, 0], ids=["dax", "read-write"])
def any_share(request, host: HostDaemon) -> Iterator[Share]:
    """A guest with a DAX window, then one without (READ/WRITE fallback)."""
    with connect(host.socket_path, window_size=request.param) as guest:
        yield guest
