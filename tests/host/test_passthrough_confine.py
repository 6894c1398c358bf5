"""CONFINE attacks on the passthrough layer over a real export: symlinks out of the
export, '..', absolute names, device nodes, FIFOs and sockets planted in the export,
and host renames racing the guest's lookups. Every test runs twice: with openat2
(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) and with the O_NOFOLLOW fallback."""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading

import pytest

from pagefs.impl.host import confine, syscalls
from pagefs.impl.host.passthrough import GuestSession
from pagefs.impl.protocol.constants import FUSE_ROOT_ID as ROOT_ID

from .conftest import expect_errno

RENAME_EXCHANGE = 2
AT_FDCWD = -100


@pytest.fixture(autouse=True, params=["openat2", "nofollow"])
def resolution(request, monkeypatch) -> str:
    if request.param == "nofollow":
        monkeypatch.setattr(confine, "_have_openat2", False)
    return request.param


def test_symlink_to_etc_is_never_followed(guest: GuestSession, export) -> None:
    os.symlink("/etc", export / "etc")
    os.symlink("/etc/passwd", export / "passwd")
    link = guest.lookup(ROOT_ID, b"etc")
    assert stat.S_ISLNK(link.attr.st_mode)
    assert guest.readlink(link.nodeid) == b"/etc"
    expect_errno(errno.ENOTDIR, guest.lookup, link.nodeid, b"passwd")
    expect_errno(errno.ENOTDIR, guest.opendir, link.nodeid)
    expect_errno(errno.ENOTDIR, guest.create, link.nodeid, b"x", os.O_RDWR | os.O_CREAT, 0o644)
    expect_errno(errno.ENOTDIR, guest.mkdir, link.nodeid, b"x", 0o755)
    expect_errno(errno.ENOTDIR, guest.symlink, link.nodeid, b"x", b"y")
    expect_errno(errno.ENOTDIR, guest.unlink, link.nodeid, b"passwd")
    expect_errno(errno.ENOTDIR, guest.rename, ROOT_ID, b"file", link.nodeid, b"passwd")
    passwd = guest.lookup(ROOT_ID, b"passwd")
    expect_errno(errno.ELOOP, guest.open, passwd.nodeid, os.O_RDONLY)
    expect_errno(errno.ELOOP, guest.create, ROOT_ID, b"passwd", os.O_RDWR | os.O_CREAT, 0o644)
    before = os.stat("/etc/passwd")
    expect_errno(errno.EOPNOTSUPP, guest.setattr, passwd.nodeid, None, mode=0o777)
    after = os.stat("/etc/passwd")
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    guest.unlink(ROOT_ID, b"passwd")  # removes the link, never its target
    assert os.path.exists("/etc/passwd")


def test_relative_symlink_climbing_out(guest: GuestSession, export) -> None:
    os.symlink("../../../../../../..", export / "dir" / "up")
    up = guest.lookup(guest.lookup(ROOT_ID, b"dir").nodeid, b"up")
    expect_errno(errno.ENOTDIR, guest.lookup, up.nodeid, b"etc")


def test_dotdot_and_absolute_names_go_nowhere(guest: GuestSession) -> None:
    dir_id = guest.lookup(ROOT_ID, b"dir").nodeid
    for parent in (ROOT_ID, dir_id):
        for name in (b"..", b"../..", b"../etc", b"/etc", b"/", b"dir/../..", b"etc\0"):
            with pytest.raises(OSError) as caught:
                guest.lookup(parent, name)
            assert caught.value.errno == errno.EINVAL


def test_fifo_is_looked_up_but_never_opened(guest: GuestSession, export) -> None:
    os.mkfifo(export / "fifo")
    fifo = guest.lookup(ROOT_ID, b"fifo")
    assert stat.S_ISFIFO(fifo.attr.st_mode)
    assert guest.getattr(fifo.nodeid).st_mode == fifo.attr.st_mode
    # Opening a FIFO with no writer would block the daemon: these must fail at once.
    expect_errno(errno.EACCES, guest.open, fifo.nodeid, os.O_RDONLY)
    expect_errno(errno.EACCES, guest.create, ROOT_ID, b"fifo", os.O_RDWR | os.O_CREAT, 0o644)
    expect_errno(errno.EINVAL, guest.setattr, fifo.nodeid, None, size=0)


@pytest.mark.usefixtures("as_root")  # mknod of a device node
@pytest.mark.parametrize(("kind", "major", "minor"), [
    (stat.S_IFCHR, 1, 3),  # /dev/null's numbers
    (stat.S_IFCHR, 1, 1),  # /dev/mem's numbers
    (stat.S_IFBLK, 7, 0),  # a loop device's numbers
])
def test_device_nodes_are_never_opened(guest: GuestSession, export, kind, major, minor) -> None:
    os.mknod(export / "dev", kind | 0o666, os.makedev(major, minor))
    dev = guest.lookup(ROOT_ID, b"dev")
    assert stat.S_IFMT(dev.attr.st_mode) == kind
    assert dev.attr.st_rdev == os.makedev(major, minor)
    for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
        expect_errno(errno.EACCES, guest.open, dev.nodeid, flags)
    expect_errno(errno.EACCES, guest.create, ROOT_ID, b"dev", os.O_RDWR | os.O_CREAT, 0o644)
    expect_errno(errno.EINVAL, guest.setattr, dev.nodeid, None, size=0)


def test_unix_socket_is_never_opened(guest: GuestSession, export) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(export / "sock"))
        sock = guest.lookup(ROOT_ID, b"sock")
        expect_errno(errno.ENXIO, guest.open, sock.nodeid, os.O_RDWR)


def test_readdir_types_special_files_without_opening_them(guest: GuestSession, export) -> None:
    os.mkfifo(export / "fifo")
    os.symlink("/etc", export / "etc")
    listing = {e.name: e.type for e in guest.readdir(guest.opendir(ROOT_ID), 0)}
    assert listing[b"fifo"] == stat.S_IFIFO >> 12
    assert listing[b"etc"] == stat.S_IFLNK >> 12
    assert listing[b"dir"] == stat.S_IFDIR >> 12


def exchange(one, two) -> None:
    """Atomically swap two host names (renameat2 RENAME_EXCHANGE)."""
    syscalls.renameat2(AT_FDCWD, bytes(one), AT_FDCWD, bytes(two), RENAME_EXCHANGE)


def race(flip, probe, rounds: int = 400) -> None:
    """Run `probe` `rounds` times while another thread keeps calling `flip`."""
    stop = threading.Event()

    def flipping() -> None:
        while not stop.is_set():
            flip()

    flipper = threading.Thread(target=flipping)
    flipper.start()
    try:
        for _ in range(rounds):
            probe()
    finally:
        stop.set()
        flipper.join()


def test_rename_racing_lookup_never_mixes_inodes(guest: GuestSession, export) -> None:
    (export / "a").write_bytes(b"contents of a")
    (export / "b").write_bytes(b"contents of b")
    by_ino = {os.stat(export / n).st_ino: (export / n).read_bytes() for n in ("a", "b")}
    seen = set()

    def probe() -> None:
        entry = guest.lookup(ROOT_ID, b"a")
        fh = guest.open(entry.nodeid, os.O_RDONLY)
        assert guest.read(fh, 0, 100) == by_ino[entry.attr.st_ino]
        assert guest.getattr(entry.nodeid).st_ino == entry.attr.st_ino
        guest.release(fh)
        guest.forget(entry.nodeid, 1)
        seen.add(entry.attr.st_ino)

    race(lambda: exchange(export / "a", export / "b"), probe)
    assert seen <= set(by_ino)




def test_directory_swapped_for_a_symlink_to_etc_mid_lookup(guest: GuestSession, export) -> None:
    (export / "d").mkdir()
    (export / "d" / "passwd").write_bytes(b"confined")
    os.symlink("/etc", export / "swap")
    results = set()

    def probe() -> None:
        try:
            d = guest.lookup(ROOT_ID, b"d")
        except OSError as err:
            pytest.fail(f"lookup of d failed: {err}")
        try:
            entry = guest.lookup(d.nodeid, b"passwd")
        except OSError as err:
            assert err.errno == errno.ENOTDIR and stat.S_ISLNK(d.attr.st_mode)
            results.add("refused")
            return
        fh = guest.open(entry.nodeid, os.O_RDONLY)
        assert guest.read(fh, 0, 100) == b"confined"
        guest.release(fh)
        results.add("confined")

    race(lambda: exchange(export / "d", export / "swap"), probe)
    assert results  # every probe either stayed inside or was refused


def test_create_through_a_dangling_symlink_makes_nothing_outside(guest: GuestSession, export,
                                                                 tmp_path) -> None:
    outside = tmp_path / "outside-target"
    os.symlink(outside, export / "dangling")
    for flags in (os.O_RDWR | os.O_CREAT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
        expect_errno(errno.ELOOP, guest.create, ROOT_ID, b"dangling", flags, 0o644)
    expect_errno(errno.EEXIST, guest.create, ROOT_ID, b"dangling",
                 os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    expect_errno(errno.EEXIST, guest.mkdir, ROOT_ID, b"dangling", 0o755)
    assert not os.path.lexists(outside)
