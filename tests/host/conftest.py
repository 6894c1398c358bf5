"""Fixtures for the host daemon's tests: real export directories on the host's disk, a
real pagefs-host on a real socket, and guests connected to it over vhost-user."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pagefs_waits import wait_until as poll_until

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import HostDaemon, host_daemon
from pagefs.impl.host.passthrough import GuestSession, PassthroughFS

# Small enough that many guests in one test process do not crowd its address space.
WINDOW_SIZE = 64 << 20


@pytest.fixture
def as_root() -> None:
    """A test that needs root fails without it, saying so: it never silently skips."""
    if os.geteuid() != 0:
        pytest.fail("needs root: run the tests as root")


def expect_errno(code: int, call, *args, **kwargs) -> None:
    """`call(*args)` fails with exactly errno `code`."""
    with pytest.raises(OSError) as caught:
        call(*args, **kwargs)
    got = caught.value.errno
    assert got == code, f"{errno.errorcode.get(got, got)} instead of {errno.errorcode[code]}"


def open_fds(pid: int | str = "self") -> set[int]:
    """The descriptors a process holds now."""
    return {int(name) for name in os.listdir(f"/proc/{pid}/fd")}


@pytest.fixture
def export(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    root.mkdir()
    (root / "file").write_bytes(b"0123456789")
    (root / "dir").mkdir()
    (root / "dir" / "inner").write_bytes(b"inner")
    return root


@pytest.fixture
def fs(export: Path) -> Iterator[PassthroughFS]:
    with PassthroughFS(str(export)) as passthrough:
        yield passthrough


@pytest.fixture
def ro_fs(export: Path) -> Iterator[PassthroughFS]:
    with PassthroughFS(str(export), read_only=True) as passthrough:
        yield passthrough


@pytest.fixture
def guest(fs: PassthroughFS) -> Iterator[GuestSession]:
    session = fs.session()
    yield session
    session.close()


@pytest.fixture
def ro_guest(ro_fs: PassthroughFS) -> Iterator[GuestSession]:
    session = ro_fs.session()
    yield session
    session.close()


@pytest.fixture(scope="module")
def wire_export(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wire-export")


@pytest.fixture(scope="module")
def daemon(wire_export: Path) -> Iterator[HostDaemon]:
    """One real pagefs-host per test module, serving `wire_export`."""
    with host_daemon(str(wire_export)) as host:
        yield host


@pytest.fixture
def client(daemon: HostDaemon) -> Iterator[FuseClient]:
    """A guest connected to `daemon` over vhost-user, INIT done."""
    with FuseClient.connect(daemon.socket_path, window_size=WINDOW_SIZE) as fuse:
        yield fuse


@pytest.fixture
def area(client: FuseClient, wire_export: Path, request) -> tuple[FuseClient, int, Path]:
    """A fresh directory of the export for one test: (guest, its nodeid, its host path)."""
    host_dir = wire_export / request.node.name.replace("/", "_")[:200]
    host_dir.mkdir()
    (host_dir / "file").write_bytes(b"0123456789")
    (host_dir / "dir").mkdir()
    (host_dir / "dir" / "inner").write_bytes(b"inner")
    return client, client.lookup(1, host_dir.name.encode()).nodeid, host_dir


def wait_until(condition, host: HostDaemon, what: str) -> None:
    """Poll `condition` while the daemon lives (pytest's timeout bounds the wait)."""
    poll_until(condition, what, process=host)
