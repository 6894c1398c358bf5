"""Fixtures for pagefs-mount's tests: a real pagefs-host on a real socket, mounted on
/dev/fuse by a real pagefs-mount process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagefs.impl.client.host_daemon import HostDaemon
from pagefs.impl.client.mount_process import MountProcess, pagefs_mount


@pytest.fixture(autouse=True)
def as_root() -> None:
    """FUSE mounts and passthrough need root: without it the test fails, saying so."""
    if os.geteuid() != 0:
        pytest.fail("needs root (mount(2), FUSE_DEV_IOC_BACKING_OPEN): run the tests as root")


@pytest.fixture
def export(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    root.mkdir()
    (root / "file").write_bytes(b"0123456789")
    return root


@pytest.fixture
def mountpoint(tmp_path: Path) -> Path:
    path = tmp_path / "mnt"
    path.mkdir()
    return path


@pytest.fixture
def mounted(host: HostDaemon, mountpoint: Path) -> Iterator[MountProcess]:
    with pagefs_mount(host.socket_path, str(mountpoint)) as mount:
        yield mount


@pytest.fixture
def relayed(host: HostDaemon, mountpoint: Path) -> Iterator[MountProcess]:
    with pagefs_mount(host.socket_path, str(mountpoint), passthrough=False) as mount:
        yield mount
