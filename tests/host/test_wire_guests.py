"""The daemon with real guests on its real socket: a read-only export (no write path, no
writable fd ever donated), CONFINE attacks over the wire, two guests sharing a file's
pages, a guest killed mid-session (RECLAIM), and shutdown with guests connected."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from donations import observing
from pagefs_waits import children, tree_fds

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon

from .conftest import WINDOW_SIZE, expect_errno, wait_until

PAGE = mmap.PAGESIZE
NO_FH = (1 << 64) - 1  # FUSE_SETUPMAPPING_NO_FH: how a Linux guest maps, by nodeid


def window_perms(client: FuseClient, moffset: int) -> str:
    """The protection this process's page tables give a window page (from /proc/self/maps)."""
    address = client.window.base + moffset
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= address < hi:
                return perms
    raise AssertionError(f"window address {address:#x} is not mapped")


@pytest.fixture
def donated() -> Iterator[list[tuple[int, bool]]]:
    """Every fd the daemon donates to this process's windows: (access mode, writable
    shared mapping possible), recorded on arrival; the front-end then maps it as always."""
    seen: list[tuple[int, bool]] = []

    def recording(fd: int, offset: int, *_: object) -> None:
        try:
            mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                      offset=offset).close()
            can_write = True
        except PermissionError:
            can_write = False
        seen.append((fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE, can_write))

    with observing(recording):
        yield seen


# -- read-only export -----------------------------------------------------------------

@pytest.fixture(scope="module")
def ro_export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ro-export")
    (root / "file").write_bytes(b"R" * 2 * PAGE)
    os.setxattr(root / "file", "user.kept", b"yes")
    (root / "dir").mkdir()
    (root / "dir" / "inner").touch()
    return root


@pytest.fixture(scope="module")
def ro_daemon(ro_export: Path):
    with host_daemon(str(ro_export), read_only=True) as host:
        yield host


def snapshot(root: Path) -> dict[str, tuple]:
    return {str(p.relative_to(root)): (p.lstat().st_mode, p.lstat().st_mtime_ns,
                                        p.read_bytes() if p.is_file() else None,
                                        sorted(os.listxattr(p, follow_symlinks=False)),
                                        p.lstat().st_nlink, p.lstat().st_blocks)
            for p in sorted(root.rglob("*"))}


def test_read_only_export_has_no_write_path_on_the_wire(ro_daemon, ro_export, donated) -> None:
    before = snapshot(ro_export)
    with FuseClient.connect(ro_daemon.socket_path, window_size=WINDOW_SIZE) as guest:
        file_id = guest.lookup(1, b"file").nodeid
        reader = guest.open(file_id, os.O_RDONLY).fh
        refusals = [
            lambda: guest.setattr(file_id, size=0),
            lambda: guest.setattr(file_id, mode=0o777),
            lambda: guest.setattr(file_id, mtime_ns=0),
            lambda: guest.open(file_id, os.O_WRONLY),
            lambda: guest.open(file_id, os.O_RDWR),
            lambda: guest.open(file_id, os.O_RDONLY | os.O_TRUNC),
            lambda: guest.write(file_id, reader, 0, b"x"),
            lambda: guest.create(1, b"new", os.O_RDONLY | os.O_CREAT, 0o644),
            lambda: guest.create(1, b"file", os.O_RDONLY | os.O_CREAT, 0o644),
            lambda: guest.mkdir(1, b"newdir", 0o755),
            lambda: guest.symlink(1, b"newlink", b"file"),
            lambda: guest.unlink(1, b"file"),
            lambda: guest.rmdir(1, b"dir"),
            lambda: guest.rename(1, b"file", 1, b"moved"),
            lambda: guest.rename(1, b"file", 1, b"dir", 2),
            lambda: guest.setupmapping(file_id, reader, 0, PAGE, True, 0),
            lambda: guest.setupmapping(file_id, NO_FH, 0, PAGE, True, 0),
            lambda: guest.link(file_id, 1, b"hardlink"),
            lambda: guest.link(file_id, 1, b"file"),  # EROFS before EEXIST
            lambda: guest.mknod(1, b"fifo", stat.S_IFIFO | 0o644),
            lambda: guest.mknod(1, b"sock", stat.S_IFSOCK | 0o644),
            lambda: guest.mknod(1, b"dev", stat.S_IFCHR | 0o644, 0x0103),  # before EPERM
            lambda: guest.setxattr(file_id, b"user.new", b"v"),
            lambda: guest.setxattr(file_id, b"trusted.x", b"v"),  # before EPERM
            lambda: guest.removexattr(file_id, b"user.kept"),
            lambda: guest.fallocate(file_id, reader, 0, PAGE),
            lambda: guest.fallocate(file_id, reader, 0, PAGE, 0x03),  # punch hole
            lambda: guest.fallocate(file_id, reader, 0, PAGE, 0x10),  # zero range
        ]
        for refusal in refusals:
            expect_errno(errno.EROFS, refusal)
        guest.setupmapping(file_id, reader, 0, PAGE, False, 0)
        guest.setupmapping(file_id, NO_FH, PAGE, PAGE, False, PAGE)
        assert ctypes.string_at(guest.window.base, 4) == b"RRRR"
        assert window_perms(guest, 0) == "r--s" and window_perms(guest, PAGE) == "r--s"
        assert guest.read(file_id, reader, 0, 2) == b"RR"
        assert guest.getxattr(file_id, b"user.kept") == b"yes"  # reading is not writing
        assert guest.listxattr(file_id) == [b"user.kept"]
        guest.syncfs()
    assert donated == [(os.O_RDONLY, False), (os.O_RDONLY, False)]
    assert snapshot(ro_export) == before
    assert "refused: EROFS" in ro_daemon.log()


def test_read_only_export_still_sees_host_changes(ro_daemon, ro_export) -> None:
    with FuseClient.connect(ro_daemon.socket_path, window_size=WINDOW_SIZE) as guest:
        (ro_export / "late").write_bytes(b"written by the host")
        entry = guest.lookup(1, b"late")
        fh = guest.open(entry.nodeid, os.O_RDONLY).fh
        assert guest.read(entry.nodeid, fh, 0, 100) == b"written by the host"
    (ro_export / "late").unlink()


def test_read_mappings_get_read_only_fds_in_a_writable_export(donated, area) -> None:
    client, top, host = area
    (host / "big").write_bytes(b"x" * PAGE)
    nodeid = client.lookup(top, b"big").nodeid
    rw = client.open(nodeid, os.O_RDWR).fh
    client.setupmapping(nodeid, rw, 0, PAGE, False, 0)
    client.setupmapping(nodeid, rw, 0, PAGE, True, PAGE)
    assert (window_perms(client, 0), window_perms(client, PAGE)) == ("r--s", "rw-s")
    assert donated == [(os.O_RDONLY, False), (os.O_RDWR, True)]


# -- CONFINE over the wire ------------------------------------------------------------

def test_confinement_attacks_over_the_wire(area) -> None:
    client, top, host = area
    os.symlink("/etc", host / "etc")
    os.symlink("../../../../../../../etc/passwd", host / "passwd")
    os.mkfifo(host / "fifo")
    os.mknod(host / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    etc = client.lookup(top, b"etc").nodeid
    expect_errno(errno.ENOTDIR, client.lookup, etc, b"passwd")
    expect_errno(errno.ENOTDIR, client.opendir, etc)
    expect_errno(errno.ENOTDIR, client.create, etc, b"evil", os.O_RDWR | os.O_CREAT, 0o644)
    expect_errno(errno.ELOOP, client.open, client.lookup(top, b"passwd").nodeid, os.O_RDONLY)
    expect_errno(errno.ELOOP, client.create, top, b"passwd", os.O_RDWR | os.O_CREAT, 0o644)
    expect_errno(errno.EACCES, client.open, client.lookup(top, b"fifo").nodeid, os.O_RDONLY)
    expect_errno(errno.EACCES, client.open, client.lookup(top, b"null").nodeid, os.O_RDWR)
    for name in (b"..", b"../..", b"/etc", b"dir/../../.."):
        expect_errno(errno.EINVAL, client.lookup, top, name)
        expect_errno(errno.EINVAL, client.lookup, 1, name)
    # The daemon is still there for everyone, and /etc is untouched.
    assert client.getattr(top).attr.ino == os.stat(host).st_ino
    assert os.path.isfile("/etc/passwd")


# -- several guests ---------------------------------------------------------------------

def test_two_guests_share_the_same_file_pages(daemon, area) -> None:
    one, top, host = area
    (host / "shared").write_bytes(bytes(PAGE))
    with FuseClient.connect(daemon.socket_path, window_size=WINDOW_SIZE) as two:
        top_two = two.lookup(1, host.name.encode()).nodeid
        a, b = one.lookup(top, b"shared").nodeid, two.lookup(top_two, b"shared").nodeid
        one.setupmapping(a, one.open(a, os.O_RDWR).fh, 0, PAGE, True, 0)
        two.setupmapping(b, two.open(b, os.O_RDWR).fh, 0, PAGE, True, 3 * PAGE)
        ctypes.memmove(one.window.base + 10, b"from one", 8)
        assert ctypes.string_at(two.window.base + 3 * PAGE + 10, 8) == b"from one"  # COH-PEER
        ctypes.memmove(two.window.base + 3 * PAGE + 20, b"from two", 8)
        assert ctypes.string_at(one.window.base + 20, 8) == b"from two"
        assert (host / "shared").read_bytes()[10:28] == b"from one\0\0from two"
        fh = two.open(b, os.O_RDONLY).fh
        assert two.read(b, fh, 10, 8) == b"from one"  # READ and the window agree


GUEST = textwrap.dedent("""
    import os, sys, time
    from pagefs.impl.client.fuse_client import FuseClient
    guest = FuseClient.connect(sys.argv[1], window_size=64 << 20)
    top = guest.lookup(1, sys.argv[2].encode()).nodeid
    for i in range(20):
        made = guest.create(top, b"f%d" % i, os.O_RDWR | os.O_CREAT, 0o644)
        guest.write(made.entry.nodeid, made.open.fh, 0, b"x" * 8192)
        guest.setupmapping(made.entry.nodeid, made.open.fh, 0, 8192, True, i * 8192)
    guest.opendir(top)
    print("holding", flush=True)
    time.sleep(600)
""")


def test_a_guest_killed_mid_session_is_reclaimed(daemon, area) -> None:
    survivor, top, host = area
    wait_until(lambda: settled(daemon, 1), daemon, "earlier tests' guests to go")
    baseline = tree_fds(daemon.pid)
    victim = subprocess.Popen([sys.executable, "-c", GUEST, daemon.socket_path, host.name],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout.readline() == "holding\n"
        holding = tree_fds(daemon.pid)
        assert holding > baseline + 20  # its nodeids and handles are host fds
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        victim.stdout.close()
    wait_until(lambda: tree_fds(daemon.pid) == baseline, daemon, "RECLAIM of the killed guest")
    assert "released 22 nodeids, 21 handles, 20 mappings" in daemon.log()
    file_id = survivor.lookup(top, b"file").nodeid
    fh = survivor.open(file_id, os.O_RDONLY).fh
    assert survivor.read(file_id, fh, 0, 4) == b"0123"  # the other guest carries on


def live_guests(host) -> int:
    log = host.log()
    return log.count(" connected (pid") - log.count(" disconnected") - log.count(" dropped")


def settled(host, guests: int) -> bool:
    """`guests` guests connected and no worker process beyond theirs: a going guest's
    worker logs its disconnect before it exits, and until it is reaped its descriptors
    (and the parent's end of its slot) still count in tree_fds."""
    return live_guests(host) == guests and len(children(host.pid)) <= guests


def test_shutdown_with_guests_connected(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"data")
    with host_daemon(str(tmp_path)) as host:
        guests = [FuseClient.connect(host.socket_path, window_size=WINDOW_SIZE)
                  for _ in range(2)]
        try:
            nodeid = guests[0].lookup(1, b"file").nodeid
            guests[0].open(nodeid, os.O_RDONLY)
            assert host.stop(signal.SIGTERM) == 0  # and its socket is gone
            for guest in guests:
                with pytest.raises((ConnectionError, OSError)):
                    guest.getattr(1)
        finally:
            for guest in guests:
                guest.close()
        assert host.log().count("disconnected") == 2
        assert "stopped" in host.log()


def test_a_greedy_guest_meets_its_cap_and_the_others_carry_on(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / f"f{i:02}").touch()
    with host_daemon(str(tmp_path), options=("--fds-per-guest", "16")) as host:
        with (FuseClient.connect(host.socket_path, window_size=WINDOW_SIZE) as greedy,
              FuseClient.connect(host.socket_path, window_size=WINDOW_SIZE) as modest):
            refused = 0
            for i in range(50):
                try:
                    greedy.lookup(1, f"f{i:02}".encode())
                except OSError as err:
                    assert err.errno == errno.EMFILE
                    refused += 1
            assert refused == 50 - 15  # root + 15 lookups
            assert modest.lookup(1, b"f49").attr.ino == os.stat(tmp_path / "f49").st_ino
        assert "refused: EMFILE" in host.log()


def test_many_guests_at_once_then_back_to_baseline(tmp_path: Path) -> None:
    """Six guests work at the same time on their own files and one shared file; when they
    have gone, the daemon holds exactly the descriptors it held before they came."""
    (tmp_path / "shared").write_bytes(bytes(PAGE))
    with host_daemon(str(tmp_path)) as host:
        with FuseClient.connect(host.socket_path, window_size=WINDOW_SIZE):
            pass  # the first connection's one-time set-up is not a leak
        # its worker gone too: its descriptors are no part of the baseline
        wait_until(lambda: settled(host, 0), host, "the first guest to go")
        baseline = tree_fds(host.pid)

        def work(index: int) -> None:
            with FuseClient.connect(host.socket_path, window_size=WINDOW_SIZE) as guest:
                own = guest.mkdir(1, f"g{index}".encode(), 0o755).nodeid
                for round_ in range(10):
                    made = guest.create(own, b"f%d" % round_, os.O_RDWR | os.O_CREAT, 0o644)
                    guest.write(made.entry.nodeid, made.open.fh, 0, b"%d:%d" % (index, round_))
                    guest.release(made.entry.nodeid, made.open.fh)
                    if round_ % 2:
                        guest.unlink(own, b"f%d" % round_)
                shared = guest.lookup(1, b"shared").nodeid
                fh = guest.open(shared, os.O_RDWR).fh
                guest.setupmapping(shared, fh, 0, PAGE, True, 0)
                ctypes.memmove(guest.window.base + index, b"%d" % index, 1)
                # leaves holding the handle and the mapping: disconnect reclaims them

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(work, range(6)))
        assert (tmp_path / "shared").read_bytes()[:6] == b"012345"  # every guest's store
        for index in range(6):
            assert sorted(os.listdir(tmp_path / f"g{index}")) == [f"f{i}" for i in (0, 2, 4, 6, 8)]
        wait_until(lambda: live_guests(host) == 0, host, "every guest to go")
        # each worker logs its guest gone, then exits: its descriptors go with it
        wait_until(lambda: tree_fds(host.pid) == baseline, host, "every worker to go")
