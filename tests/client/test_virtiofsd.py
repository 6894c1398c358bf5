"""Interop: our front-end and FUSE client drive QEMU's C virtiofsd (a third-party back-end)
over a real vhost-user socket, each request checked against what the host directory shows.
The tests start and stop virtiofsd themselves and leave no process or socket behind."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from pagefs_waits import assert_child_dies_with_holder

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.virtiofsd import (
    DEBIAN_PACKAGE,
    Virtiofsd,
    VirtiofsdError,
)
from pagefs.impl.protocol.constants import FUSE_ROOT_ID

ROOT = FUSE_ROOT_ID

# Neither root nor virtiofsd missing is a reason to skip: Virtiofsd() fails with what to
# install (qemu-system-common) or that root is needed, and `make test` provides both.
pytestmark = pytest.mark.needs_root


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello from the host\n")
    (root / "sub").mkdir()
    return root


@pytest.fixture
def client(shared: Path):
    with Virtiofsd(shared, cache="none") as daemon:
        fc = FuseClient.connect(daemon.socket_path)
        try:
            yield fc
        finally:
            fc.close()
        daemon.process.wait(10)  # virtiofsd ends with its one connection
    assert not os.path.exists(daemon.socket_path)


def test_init_negotiates(client: FuseClient) -> None:
    out = client.init_out
    assert (out.major, out.minor) >= (7, 31)
    assert out.max_write > 0
    assert client.map_alignment is None  # upstream virtiofsd 7.2 has no DAX window
    assert client.window is None


def test_lookup_and_getattr_match_host(client: FuseClient, shared: Path) -> None:
    entry = client.lookup(ROOT, b"hello.txt")
    st = os.stat(shared / "hello.txt")
    assert entry.nodeid != ROOT
    assert (entry.attr.ino, entry.attr.size, entry.attr.mode) == (st.st_ino, 20, st.st_mode)
    attr = client.getattr(entry.nodeid).attr
    assert attr.mtime * 10**9 + attr.mtimensec == st.st_mtime_ns
    assert stat.S_ISDIR(client.getattr(ROOT).attr.mode)
    with pytest.raises(OSError) as missing:
        client.lookup(ROOT, b"absent")
    assert missing.value.errno == errno.ENOENT


def test_open_read_write_fsync_release(client: FuseClient, shared: Path) -> None:
    node = client.lookup(ROOT, b"hello.txt").nodeid
    fh = client.open(node, os.O_RDWR).fh
    assert client.read(node, fh, 0, 4096) == b"hello from the host\n"
    assert client.read(node, fh, 6, 4) == b"from"
    assert client.write(node, fh, 20, b"and from the guest\n") == 19
    client.fsync(node, fh)
    assert (shared / "hello.txt").read_bytes() == b"hello from the host\nand from the guest\n"
    (shared / "hello.txt").write_bytes(b"host rewrote it")  # cache=none: seen at once
    assert client.read(node, fh, 0, 4096) == b"host rewrote it"
    client.release(node, fh)
    assert client.getattr(node).attr.size == 15


def test_create_mkdir_readdir_unlink(client: FuseClient, shared: Path) -> None:
    created = client.create(ROOT, b"new.bin", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
    assert stat.S_IMODE(os.stat(shared / "new.bin").st_mode) == 0o640
    assert created.entry.attr.ino == os.stat(shared / "new.bin").st_ino
    big = bytes(range(256)) * 1024  # 256 KiB in one WRITE
    assert client.write(created.entry.nodeid, created.open.fh, 0, big) == len(big)
    client.release(created.entry.nodeid, created.open.fh)
    assert (shared / "new.bin").read_bytes() == big

    made = client.mkdir(ROOT, b"made", 0o750)
    assert (shared / "made").is_dir()
    assert made.attr.ino == os.stat(shared / "made").st_ino
    with pytest.raises(OSError) as exists:
        client.mkdir(ROOT, b"made", 0o750)
    assert exists.value.errno == errno.EEXIST

    fh = client.opendir(ROOT).fh
    names = {d.name for d in client.readdir(ROOT, fh)} - {b".", b".."}
    client.releasedir(ROOT, fh)
    assert names == {os.fsencode(n) for n in os.listdir(shared)}

    client.unlink(ROOT, b"new.bin")
    assert not (shared / "new.bin").exists()
    with pytest.raises(OSError) as gone:
        client.unlink(ROOT, b"new.bin")
    # POSIX says ENOENT; QEMU's virtiofsd answers EIO when the name does not resolve
    # (tools/virtiofsd/passthrough_ll.c, lo_unlink: lookup_name fails -> EIO)
    assert gone.value.errno == errno.EIO


def test_host_changes_are_seen(client: FuseClient, shared: Path) -> None:
    (shared / "later.txt").write_bytes(b"made on the host")
    entry = client.lookup(ROOT, b"later.txt")
    assert entry.attr.size == 16
    os.truncate(shared / "later.txt", 4)
    assert client.getattr(entry.nodeid).attr.size == 4
    client.forget(entry.nodeid, 1)  # hiprio queue, no reply
    client.batch_forget([(client.lookup(ROOT, b"sub").nodeid, 1)])
    assert client.statfs().namelen == os.statvfs(shared).f_namemax


def test_many_requests_in_flight(client: FuseClient, shared: Path) -> None:
    from pagefs.impl import protocol as p

    futures = [client.submit(p.Opcode.GETATTR, ROOT, p.GetattrIn()) for _ in range(500)]
    inos = {f.result(30).attr.ino for f in futures}
    assert inos == {os.stat(shared).st_ino}


def test_launcher_names_the_package_when_binary_is_missing(tmp_path: Path) -> None:
    with pytest.raises(VirtiofsdError) as missing:
        Virtiofsd(tmp_path, binary=str(tmp_path / "no-virtiofsd"))
    assert DEBIAN_PACKAGE in str(missing.value)


def test_launcher_stops_an_unused_daemon_and_removes_its_socket(shared: Path) -> None:
    daemon = Virtiofsd(shared, cache="always").start()
    pid, path = daemon.process.pid, daemon.socket_path
    assert os.path.exists(path)
    daemon.stop()
    assert not os.path.exists(path)
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped


HOLD_VIRTIOFSD = """
import sys, time
from pagefs.impl.client.virtiofsd import Virtiofsd
with Virtiofsd(sys.argv[1]) as daemon:
    print(daemon.process.pid, flush=True)
    time.sleep(3600)
"""


def test_virtiofsd_dies_with_the_process_holding_it(shared: Path) -> None:
    """Killing whoever started virtiofsd must not leave it running with ppid 1."""
    assert_child_dies_with_holder(HOLD_VIRTIOFSD, str(shared))
