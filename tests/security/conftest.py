"""Fixtures for the security suite: a real pagefs-host on a real socket, a real front-end,
and a record of every descriptor the front-end receives over SCM_RIGHTS."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from donations import observing

from pagefs.impl.transport import vhost_user

WINDOW_SIZE = 16 << 20


@dataclass(frozen=True)
class Received:
    """One descriptor that crossed to the front-end, as fstat and fcntl saw it on arrival."""

    mode: int
    access: int
    target: str

    @property
    def regular(self) -> bool:
        return stat.S_ISREG(self.mode)


@pytest.fixture
def received(monkeypatch) -> Iterator[list[Received]]:
    """Every fd the daemon's messages bring into this process (all of them front-end
    channels: the daemon is another process), fstat()ed on arrival: each SHMEM_MAP's by
    the front-end's observer, any other's as a Python channel's recvmsg hands it over."""
    seen: list[Received] = []
    real_recv = vhost_user.Channel.recv

    def record(fd: int, *_: object) -> None:
        st = os.fstat(fd)
        access = int(open(f"/proc/self/fdinfo/{fd}").read().split("flags:")[1].split()[0], 8)
        seen.append(Received(st.st_mode, access & os.O_ACCMODE,
                             os.readlink(f"/proc/self/fd/{fd}")))

    def recording(self, timeout: float | None = None):
        msg = real_recv(self, timeout)
        for fd in msg.fds if msg is not None else ():
            record(fd)
        return msg

    monkeypatch.setattr(vhost_user.Channel, "recv", recording)
    with observing(record):
        yield seen


def tree(root: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """Everything under `root`: mode, owner, size, and the bytes of each regular file."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_size, data)
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A host directory beside the export that no guest may reach: its tree is the same
    after the test as before."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "secret").write_bytes(b"host secret")
    (place / "subdir").mkdir()
    (place / "subdir" / "deep").write_bytes(b"deep secret")
    before = tree(place)
    yield place
    assert tree(place) == before, "something outside the export changed"


def expect_errno(code: int, call, *args, **kwargs) -> None:
    """Assert that call(*args, **kwargs) raises OSError with exactly this errno."""
    with pytest.raises(OSError) as caught:
        call(*args, **kwargs)
    got = caught.value.errno
    assert got == code, f"{errno.errorcode.get(got, got)} instead of {errno.errorcode[code]}"
