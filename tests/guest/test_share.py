"""The Share API's own logic (paths, handles, data path choice, mappings), with the
real host filesystem session answering in-process and a real window; the same
behaviour over the real wire is in test_wire.py."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pagefs.impl.guest.share import Share
from pagefs.impl.guest.window import DaxWindow
from pagefs.impl.host.passthrough import PassthroughFS

from .inprocess import InProcessWindow

RANGE = 64 * 1024


class CountingSession:
    """The host session, with a count of the data messages the guest sent."""

    def __init__(self, session) -> None:
        self._session = session
        self.reads = 0
        self.writes = 0

    def read(self, fh: int, offset: int, size: int) -> bytes:
        self.reads += 1
        return self._session.read(fh, offset, size)

    def write(self, fh: int, offset: int, data: bytes) -> int:
        self.writes += 1
        return self._session.write(fh, offset, data)

    def __getattr__(self, name: str):
        return getattr(self._session, name)


def _guest(tmp_path: Path, dax: bool) -> Iterator[tuple[Share, Path, CountingSession]]:
    root = tmp_path / "export"
    root.mkdir()
    fs = PassthroughFS(str(root))
    session = CountingSession(fs.session())
    frontend = InProcessWindow(session._session, 4 * RANGE) if dax else None
    window = DaxWindow(frontend.base, frontend.size, frontend, range_size=RANGE) if dax else None
    share = Share(session, window, max_read=8192, max_write=8192)
    yield share, root, session
    share.disconnect()
    if frontend:
        frontend.close()
    session.close()
    fs.close()


@pytest.fixture(params=[True, False], ids=["dax", "no-dax"])
def guest(request, tmp_path: Path) -> Iterator[tuple[Share, Path, CountingSession]]:
    yield from _guest(tmp_path, request.param)


@pytest.fixture
def dax_guest(tmp_path: Path) -> Iterator[tuple[Share, Path, CountingSession]]:
    yield from _guest(tmp_path, True)


def errno_of(call, *args) -> int:
    with pytest.raises(OSError) as err:
        call(*args)
    return err.value.errno


def test_namespace_calls_and_their_errnos(guest) -> None:
    share, root, _ = guest
    share.mkdir("d")
    share.write_file("d/f", b"x")
    share.symlink("../elsewhere", "d/link")
    assert sorted(share.listdir("d")) == ["f", "link"]
    assert share.readlink("d/link") == "../elsewhere"
    assert (root / "d" / "link").is_symlink()
    share.rename("d/f", "g")
    assert sorted(share.listdir("/")) == ["d", "g"]
    assert share.read_file("./d/../g") == b"x"
    assert errno_of(share.rmdir, "d") == errno.ENOTEMPTY
    assert errno_of(share.mkdir, "g") == errno.EEXIST
    assert errno_of(share.open, "missing") == errno.ENOENT
    assert errno_of(share.listdir, "g") == errno.ENOTDIR
    assert errno_of(share.open, "g", os.O_CREAT | os.O_EXCL | os.O_WRONLY) == errno.EEXIST
    share.unlink("d/link")
    share.rmdir("d")
    assert errno_of(share.stat, "d") == errno.ENOENT


def test_handle_positions_append_and_truncate(guest) -> None:
    share, root, _ = guest
    with share.open("f", os.O_RDWR | os.O_CREAT) as f:
        assert f.write(b"hello ") == 6
        assert f.write(b"world") == 5
        share.seek(f, 0)
        assert f.read(5) == b"hello"
        assert f.read() == b" world"
        assert f.pread(3, 2) == b"llo" and f.pwrite(b"J", 0) == 1
        share.truncate(f, 4)
        assert share.stat(f).st_size == 4
    with share.open("f", os.O_WRONLY | os.O_APPEND) as f:
        f.write(b"!!")
    assert (root / "f").read_bytes() == b"Jell!!"
    share.truncate("f", 0)
    assert (root / "f").read_bytes() == b""


def test_access_modes_are_checked(guest) -> None:
    share, root, _ = guest
    (root / "f").write_bytes(b"data")
    with share.open("f") as ro, share.open("f", os.O_WRONLY) as wo:
        assert errno_of(share.write, ro, b"x") == errno.EBADF
        assert errno_of(share.read, wo) == errno.EBADF
        if share.dax:
            assert errno_of(share.mmap, ro, 0, 4096, True) == errno.EACCES
    closed = share.open("f")
    closed.close()
    assert errno_of(share.pread, closed, 1, 0) == errno.EBADF
    assert errno_of(share.close, closed) == errno.EBADF


def test_reads_and_in_eof_writes_use_the_window_extending_writes_use_write(guest) -> None:
    share, root, session = guest
    (root / "f").write_bytes(bytes(range(256)) * 1024)  # 256 KiB: four ranges
    with share.open("f", os.O_RDWR) as f:
        assert f.pread(1000, RANGE - 500) == (bytes(range(256)) * 1024)[RANGE - 500 : RANGE + 500]
        assert f.pwrite(b"A" * 3000, RANGE - 1000) == 3000
        assert f.pwrite(b"tail", 256 * 1024 - 2) == 4  # extends the file
    data = (root / "f").read_bytes()
    assert data[RANGE - 1000 : RANGE + 2000] == b"A" * 3000 and data[-4:] == b"tail"
    if share.dax:
        assert (session.reads, session.writes) == (0, 1)
    else:
        assert session.reads == 1 and session.writes == 2


def test_no_dax_means_no_mmap(tmp_path: Path) -> None:
    for share, root, _ in _guest(tmp_path, False):
        (root / "f").write_bytes(b"data")
        with share.open("f") as f:
            assert errno_of(share.mmap, f, 0, 4096) == errno.ENODEV


def test_mapping_is_coherent_with_the_host_and_contains_truncation(dax_guest) -> None:
    share, root, _ = dax_guest
    (root / "f").write_bytes(b"a" * (3 * RANGE))
    with share.open("f", os.O_RDWR) as f:
        m = share.mmap(f, 0, 3 * RANGE, writable=True)
    with m:  # LIFETIME: the mapping outlives its handle
        m[RANGE - 2 : RANGE + 2] = b"WXYZ"  # a store across two window ranges
        assert (root / "f").read_bytes()[RANGE - 2 : RANGE + 2] == b"WXYZ"
        os.truncate(root / "f", 3 * RANGE)
        fd = os.open(root / "f", os.O_RDWR)
        os.pwrite(fd, b"HOST", 0)
        assert m[0:4] == b"HOST"  # COH-READ through the mapping
        os.ftruncate(fd, 100)
        os.close(fd)
        assert m.read(0, 8192)[:100] == b"HOST" + b"a" * 96
        assert len(m.read(0, 8192)) == 4096 and m.size == 100
        assert errno_of(m.read, 2 * RANGE, 10) == errno.EFAULT
        assert errno_of(m.__setitem__, slice(8192, 8193), b"x") == errno.EFAULT
        views = m.unsafe_views()
        assert [len(v) for v in views] == [RANGE] * 3 and bytes(views[0][:4]) == b"HOST"
    assert m.closed
    with pytest.raises(ValueError):
        m.read(0, 1)


def test_window_exhaustion_falls_back_to_read(dax_guest) -> None:
    share, root, session = dax_guest
    (root / "f").write_bytes(b"z" * (5 * RANGE))
    with share.open("f") as f:
        pins = [share.mmap(f, i * RANGE, RANGE) for i in range(4)]
        assert errno_of(share.mmap, f, 4 * RANGE, RANGE) == errno.ENOMEM
        assert f.pread(10, 4 * RANGE) == b"z" * 10 and session.reads == 1
        for m in pins:
            m.close()
        assert f.pread(10, 4 * RANGE) == b"z" * 10 and session.reads == 1
