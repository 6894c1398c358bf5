"""The Share API over the real wire, on pagefs-host: paths, handles, access modes,
which data path carries the bytes, mappings; with and without the DAX window."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

import pytest
from pagefs_waits import children, tree_fds, wait_until

from pagefs.impl.guest import safemem
from pagefs.impl.guest.connect import connect
from pagefs.impl.guest.datapath import DataPath
from pagefs.impl.guest.share import Share

RANGE = 2 * 1024 * 1024


class DataMessages:
    """Counts the READ and WRITE requests a share sends (wrapping its FUSE client's calls)."""

    def __init__(self, share: Share) -> None:
        self.reads = self.writes = 0
        client = share.requests
        read, write = client.read, client.write

        def counted_read(*args):
            self.reads += 1
            return read(*args)

        def counted_write(*args):
            self.writes += 1
            return write(*args)

        client.read, client.write = counted_read, counted_write


def errno_of(call, *args) -> int:
    with pytest.raises(OSError) as err:
        call(*args)
    return err.value.errno


def test_namespace_calls_and_their_errnos(any_share: Share, export: Path) -> None:
    share, root = any_share, export
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


def test_handle_positions_append_and_truncate(any_share: Share, export: Path) -> None:
    share, root = any_share, export
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
    with share.open("f", os.O_WRONLY) as f:  # no mapping without read access: by WRITE
        assert f.pwrite(b"j", 0) == 1
        share.fsync(f)
    assert (root / "f").read_bytes() == b"jell!!"
    share.truncate("f", 0)
    assert (root / "f").read_bytes() == b""


def test_access_modes_are_checked(any_share: Share, export: Path) -> None:
    share, root = any_share, export
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


def test_reads_and_in_eof_writes_use_the_window_extending_writes_use_write(
    any_share: Share, export: Path
) -> None:
    share, session = any_share, DataMessages(any_share)
    content = bytes(range(256)) * (2 * RANGE // 256)
    (export / "f").write_bytes(content)
    with share.open("f", os.O_RDWR) as f:
        assert f.pread(1000, RANGE - 500) == content[RANGE - 500 : RANGE + 500]
        assert f.pwrite(b"A" * 3000, RANGE - 1000) == 3000  # across two ranges
        assert f.pwrite(b"tail", 2 * RANGE - 2) == 4  # extends the file
    data = (export / "f").read_bytes()
    assert data[RANGE - 1000 : RANGE + 2000] == b"A" * 3000 and data[-4:] == b"tail"
    if share.dax:
        assert (session.reads, session.writes) == (0, 1)
    else:
        assert (session.reads, session.writes) == (1, 2)


def test_without_dax_there_is_no_mmap(host, export: Path) -> None:
    (export / "f").write_bytes(b"data")
    with connect(host.socket_path, window_size=0) as share, share.open("f") as f:
        assert not share.dax
        assert errno_of(share.mmap, f, 0, 4096) == errno.ENODEV


def test_mapping_is_coherent_with_the_host_and_contains_truncation(
    share: Share, export: Path
) -> None:
    root = export
    (root / "f").write_bytes(b"a" * (3 * RANGE))
    with share.open("f", os.O_RDWR) as f:
        m = share.mmap(f, 0, 3 * RANGE, writable=True)
    with m:  # LIFETIME: the mapping outlives its handle
        m[RANGE - 2 : RANGE + 2] = b"WXYZ"  # a store across two window ranges
        assert (root / "f").read_bytes()[RANGE - 2 : RANGE + 2] == b"WXYZ"
        assert m.read(RANGE - 2, 4) == b"WXYZ"  # loads across them, in one C call
        buffer = bytearray(6)
        assert m.read_into(RANGE - 3, buffer) == 6 and buffer == b"aWXYZa"
        assert m.read_into(3 * RANGE - 2, buffer) == 2 and buffer[:2] == b"aa"
        assert m.read(3 * RANGE - 2, 10) == b"aa"  # the mapping ends
        with pytest.raises(IndexError):
            m.read_into(-1, buffer)
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
        with pytest.raises(IndexError):
            m[3 * RANGE]
        views = m.unsafe_views()
        assert [len(v) for v in views] == [RANGE] * 3 and bytes(views[0][:4]) == b"HOST"
    assert m.closed
    for access in (lambda: m.read(0, 1), lambda: m.read(0, 100),
                   lambda: m.read_into(0, bytearray(100))):
        with pytest.raises(ValueError):
            access()


def test_window_exhaustion_falls_back_to_read(host, export: Path) -> None:
    (export / "f").write_bytes(b"z" * (5 * RANGE))
    with connect(host.socket_path, window_size=4 * RANGE) as share, share.open("f") as f:
        session = DataMessages(share)
        assert errno_of(share.mmap, f, 0, 5 * RANGE) == errno.ENOMEM  # larger than the window
        pins = [share.mmap(f, i * RANGE, RANGE) for i in range(4)]
        assert errno_of(share.mmap, f, 4 * RANGE, RANGE) == errno.ENOMEM
        assert f.pread(10, 4 * RANGE) == b"z" * 10 and session.reads == 1
        for m in pins:
            m.close()
        # Mapping now would evict a busy range: a small random read goes by READ instead,
        # and every range stays mapped; a large one maps (reclaiming what it must).
        assert f.pread(10, 4 * RANGE) == b"z" * 10 and session.reads == 2
        assert share.window.free_count() == 0
        assert f.pread(RANGE // 2, 4 * RANGE) == b"z" * (RANGE // 2) and session.reads == 2
        assert share.window.mapped(f.nodeid).keys() >= {4 * RANGE}


def test_the_path_walk_follows_symlinks_in_the_guest(share: Share, export: Path) -> None:
    share.mkdir("d")
    share.symlink("d", "rel")
    share.symlink("/d/../d", "abs")
    share.symlink("loop", "loop")
    share.write_file("rel/x", b"via a symlink")
    assert (export / "d" / "x").read_bytes() == b"via a symlink"
    assert share.read_file("abs/x") == share.read_file("../../d/./x") == b"via a symlink"
    assert share.stat("rel").st_mode & 0o170000 == 0o040000
    assert share.lstat("rel").st_mode & 0o170000 == 0o120000
    assert errno_of(share.open, "loop") == errno.ELOOP
    assert errno_of(share.open, "d") == errno.EISDIR
    assert errno_of(share.open, "d/x/y") == errno.ENOTDIR
    assert errno_of(share.mkdir, "..") == errno.EINVAL
    assert errno_of(share.open, "d/a\0b") == errno.EINVAL
    assert errno_of(share.mkdir, "m", -1) == errno.EINVAL
    assert errno_of(share.open, "n", os.O_CREAT | os.O_WRONLY, 1 << 40) == errno.EINVAL
    assert errno_of(share.symlink, "a\0b", "l2") == errno.EINVAL
    share.unlink("rel")  # the link, not its target
    assert share.listdir("d") == ["x"]


class StaleFirstSize:
    """The FUSE client, except that the first GETATTR answers a size seen earlier: the
    host truncates between the data path's size check and its copy."""

    def __init__(self, client, stale_size: int) -> None:
        self._client = client
        self._stale: int | None = stale_size
        self.getattrs = 0

    def getattr(self, nodeid: int, fh: int | None = None):
        self.getattrs += 1
        out = self._client.getattr(nodeid, fh)
        if self._stale is not None:
            out = replace(out, attr=replace(out.attr, size=self._stale))
            self._stale = None
        return out

    def __getattr__(self, name: str):
        return getattr(self._client, name)


def test_a_fault_in_the_middle_of_a_window_copy_ends_short_or_goes_by_write(
    share: Share, export: Path
) -> None:
    (export / "f").write_bytes(b"q" * (3 * RANGE))
    with share.open("f", os.O_RDWR) as f:
        assert f.pread(1, 2 * RANGE) == b"q"  # the ranges are mapped now
        os.truncate(export / "f", RANGE + 100)
        stale = StaleFirstSize(share.requests, 3 * RANGE)
        data = DataPath(stale, share.window, max_read=1 << 20, max_write=1 << 20)
        # The copy faults at the first page past the new end: a short read at the end.
        assert data.pread(f.nodeid, f.fh, 2 * RANGE, RANGE // 2) == b"q" * (RANGE // 2 + 100)
        assert stale.getattrs == 2
        stale._stale = 3 * RANGE
        # A store faults there too: the rest goes by WRITE, which extends the file.
        assert data.pwrite(f.nodeid, f.fh, b"w" * RANGE, RANGE) == RANGE
    assert (export / "f").read_bytes() == b"q" * RANGE + b"w" * RANGE


def test_unused_nodeids_are_handed_back(host, export: Path) -> None:
    for i in range(40):
        (export / f"f{i}").write_bytes(b"x")
    with connect(host.socket_path, window_size=0, forget_threshold=8) as share:
        baseline = tree_fds(host.pid)  # the daemon holds a descriptor per nodeid
        with share.open("f0") as held:
            for _ in range(2):
                for i in range(40):
                    assert share.stat(f"f{i}").st_size == 1
            assert tree_fds(host.pid) - baseline < 20
            assert held.pread(1, 0) == b"x"  # an open handle's nodeid is kept
    with connect(host.socket_path, window_size=0) as share:
        # the first guest's worker gone (its descriptors with it): this guest's alone
        wait_until(lambda: len(children(host.pid)) == 1, "the first guest's worker to go")
        baseline = tree_fds(host.pid)
        for i in range(40):
            share.stat(f"f{i}")
        assert tree_fds(host.pid) - baseline >= 40


def test_a_huge_read_size_allocates_only_what_the_file_holds(any_share: Share, export: Path):
    (export / "small").write_bytes(b"tiny")
    with any_share.open("small") as f:
        assert f.pread(1 << 40, 0) == b"tiny"
        assert f.pread(1 << 40, 10) == b""
        assert errno_of(f.pread, 1, 1 << 63) == errno.EFBIG
        assert errno_of(f.pread, 1, -1) == errno.EINVAL
        assert errno_of(any_share.seek, f, -1) == errno.EINVAL


def test_window_reads_ask_no_size_yet_see_every_host_change_at_once(
    share: Share, export: Path
) -> None:
    """READ-BOUND: once a range is mapped, a read inside the file is bounded by a probe
    load, not by GETATTR; a host process that truncates or extends the file is seen by
    the very next read (COH-META), because the probe asks the host's kernel."""
    path = export / "f"
    path.write_bytes(b"a" * (RANGE // 2))
    with share.open("f") as f:
        counted = StaleFirstSize(share.requests, 0)
        counted._stale = None  # answers the truth: only counts
        data = DataPath(counted, share.window, max_read=1 << 20, max_write=1 << 20)
        buffer = bytearray(4096)
        assert data.pread_into(f.nodeid, f.fh, buffer, 0) == 4096  # maps: may ask
        asked = counted.getattrs
        for offset in range(0, RANGE // 2 - 8192, 4096 * 7):
            assert data.pread_into(f.nodeid, f.fh, buffer, offset) == 4096
        assert counted.getattrs == asked  # no round trip for the size
        os.truncate(path, 6000)  # another host process
        assert data.pread(f.nodeid, f.fh, 8192, 0) == b"a" * 6000
        assert data.pread(f.nodeid, f.fh, 100, 5950) == b"a" * 50
        with open(path, "ab") as host_file:  # extends, by write(2)
            host_file.write(b"b" * 10000)
        assert data.pread(f.nodeid, f.fh, 20000, 0) == b"a" * 6000 + b"b" * 10000
        asked = counted.getattrs
        assert data.pread(f.nodeid, f.fh, 4096, 4096) == b"a" * 1904 + b"b" * 2192
        assert counted.getattrs == asked  # the page past the read loads: no GETATTR


class CountedMappings:
    """The FUSE client, counting SETUPMAPPING requests."""

    def __init__(self, client) -> None:
        self._client = client
        self.setups: list[int] = []

    def setupmapping(self, nodeid, fh, foffset, length, writable, moffset):
        self.setups.append(length)
        return self._client.setupmapping(nodeid, fh, foffset, length, writable, moffset)

    def __getattr__(self, name: str):
        return getattr(self._client, name)


def test_a_mapping_of_several_ranges_is_one_setupmapping(host, export: Path) -> None:
    """Several ranges side by side in the window go in one SETUPMAPPING (one SHMEM_MAP
    round trip); each range is then the window's own: reclaimed, forgotten and
    removed one by one, on both sides' books."""
    data = os.urandom(3 * RANGE)
    (export / "f").write_bytes(data)
    with connect(host.socket_path, window_size=4 * RANGE) as share, share.open("f") as f:
        counted = CountedMappings(share.window.requests)
        share.window.requests = counted
        with share.mmap(f, 0, 3 * RANGE) as m:
            assert counted.setups == [3 * RANGE]
            assert m.read(RANGE - 10, 20) == data[RANGE - 10:RANGE + 10]
            assert m.read(2 * RANGE, RANGE) == data[2 * RANGE:]
        assert share.window.reclaim(1) == 1  # one range of the three, on its own
        with share.mmap(f, 0, 3 * RANGE) as m:  # two still mapped: one by one
            assert m.read(0, 3 * RANGE) == data
        assert counted.setups == [3 * RANGE, RANGE]
        assert share.window.reclaim(4) == 3
        assert share.requests.window.mapped_bytes() == 0


class Refusing:
    """A FUSE client for the data path that fails the test on any request: the fast read
    of ranges already mapped needs none."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the fast read sent {name}")


def test_the_fast_read_sends_nothing_yet_sees_every_host_change(share: Share, export: Path):
    """Handle.pread_into and pread of mapped ranges are one C call (fastread.c): no
    request, and still COH-READ, and EOF-FAULT's exact count when the host truncates."""
    path = export / "f"
    data = os.urandom(3 * RANGE)
    path.write_bytes(data)
    with share.open("f") as f:
        buffer = bytearray(8192)
        for offset in (0, RANGE):  # maps ranges 0 and 1
            assert f.pread_into(buffer, offset) == 8192
        requests, share.data.requests = share.data.requests, Refusing()
        try:
            # Inside a range; across two; with the probe in the next range.
            for offset in (4096, RANGE - 4096, RANGE - 8192, RANGE + 100):
                assert f.pread_into(buffer, offset) == 8192
                assert buffer == data[offset : offset + 8192]
            assert f.pread(8192, 100) == data[100:8292]
            with open(path, "r+b") as host_file:  # another host process writes
                host_file.seek(5000)
                host_file.write(b"HOST")
            assert f.pread_into(buffer, 4096) == 8192 and buffer[904:908] == b"HOST"
        finally:
            share.data.requests = requests
        os.truncate(path, RANGE + 5000)  # inside the next read: exactly what remains
        assert f.pread_into(buffer, RANGE) == 5000
        assert buffer[:5000] == data[RANGE : RANGE + 5000]
        os.truncate(path, RANGE - 10)
        assert f.pread_into(buffer, RANGE) == 0
        assert f.pread_into(buffer, RANGE - 8192) == 8182
        with open(path, "ab") as host_file:  # grown again, by write(2)
            host_file.write(b"z" * 20000)
        assert f.pread_into(buffer, RANGE) == 8192 and buffer == b"z" * 8192


def test_the_fast_read_keeps_every_check(share: Share, export: Path) -> None:
    (export / "f").write_bytes(b"x" * 8192)
    f = share.open("f")
    buffer = bytearray(100)
    assert f.pread_into(buffer, 0) == 100  # mapped: the next reads could be fast
    with pytest.raises(BufferError):  # as the general path says it
        f.pread_into(b"immutable", 0)  # type: ignore[arg-type]
    assert errno_of(f.pread_into, buffer, -1) == errno.EINVAL
    assert errno_of(f.pread_into, buffer, 1 << 63) == errno.EFBIG
    assert share.pread_into(f, memoryview(buffer)[10:20], 5) == 10
    f.close()
    assert errno_of(f.pread_into, buffer, 0) == errno.EBADF
    with share.open("f", os.O_WRONLY) as w:
        assert errno_of(w.pread_into, buffer, 0) == errno.EBADF


def test_handle_pread_tries_the_fast_read_once_then_the_general_path(
        share: Share, export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A declined fast read is not tried again by the general path: nothing changed
    between the two tries. The real C read runs; only its calls are counted."""
    data = os.urandom(2 * RANGE)
    (export / "f").write_bytes(data)
    calls = []
    real = safemem.pread_bytes

    def counted(reader: safemem.Reader, size: int, offset: int) -> bytes | None:
        calls.append(offset)
        return real(reader, size, offset)

    monkeypatch.setattr(safemem, "pread_bytes", counted)
    with share.open("f") as f:
        assert f.pread(8192, 100) == data[100:8292]  # nothing mapped: declined, then READ
        assert calls == [100]
        assert f.pread(8192, 200) == data[200:8392]  # mapped now: the fast read serves it
        assert calls == [100, 200]


def test_handles_share_no_reader(any_share: Share, export: Path) -> None:
    """Each handle's fast-read key is its own, with or without a window, open or closed:
    no reader is state one handle could change under another."""
    (export / "f").write_bytes(b"x" * 100)
    first, second = any_share.open("f"), any_share.open("f")
    assert first._reader != second._reader
    first.close()
    second.close()
    assert first._reader != second._reader
    assert safemem.no_reader() != safemem.no_reader()


def test_sequential_reads_map_the_next_range_rather_than_ask_the_size(share: Share,
                                                                    export: Path) -> None:
    """A sequential read whose READ-BOUND probe lies in a range not mapped yet maps it (or
    waits for its mapping ahead): the next reads need it, a GETATTR would be a round trip
    for nothing."""
    data = os.urandom(4 * RANGE)
    (export / "f").write_bytes(data)
    with share.open("f") as f:
        counted = StaleFirstSize(share.requests, 0)
        counted._stale = None  # answers the truth: only counts
        requests, share.data.requests = share.data.requests, counted
        try:
            buffer = bytearray(RANGE // 2)
            for offset in range(0, 4 * RANGE, RANGE // 2):
                assert f.pread_into(buffer, offset) == RANGE // 2
                assert buffer == data[offset : offset + RANGE // 2]
        finally:
            share.data.requests = requests
        # The first read (nothing mapped) and the last (its probe lies past the end).
        assert counted.getattrs <= 2
