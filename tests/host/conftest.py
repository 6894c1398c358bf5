"""Fixtures for the host daemon's tests: a real export directory on the host's disk."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pagefs.impl.host.passthrough import GuestSession, PassthroughFS


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
