"""A guest reset without unmount: its new kernel sends INIT on the same connection. The
daemon starts a new session, releasing everything the old one held (host descriptors
back to baseline, window mappings taken out of the front-end's window), and the old
session's numbers stay dead. DESTROY does the same. Real daemon, real socket."""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import pytest
from pagefs_waits import tree_fds

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon

from .conftest import WINDOW_SIZE, expect_errno, wait_until

PAGE = mmap.PAGESIZE


def hold_everything(guest: FuseClient) -> tuple[int, int, int]:
    """A file's nodeid, a file handle, a directory handle and a writable mapping."""
    file_id = guest.lookup(1, b"file").nodeid
    fh = guest.open(file_id, os.O_RDWR).fh
    dh = guest.opendir(1).fh
    guest.setupmapping(file_id, fh, 0, PAGE, True, 0)
    assert guest.window.mapped_bytes() == PAGE
    return file_id, fh, dh


@pytest.mark.parametrize("ending", ["second INIT", "DESTROY then INIT"])
def test_a_new_session_releases_the_old_one(tmp_path: Path, ending: str) -> None:
    (tmp_path / "file").write_bytes(b"x" * PAGE)
    with host_daemon(str(tmp_path)) as host:
        with FuseClient.connect(host.socket_path, window_size=WINDOW_SIZE) as guest:
            baseline = tree_fds(host.pid)
            file_id, fh, dh = hold_everything(guest)
            assert tree_fds(host.pid) == baseline + 3  # the nodeid's and both handles' fds
            if ending == "DESTROY then INIT":
                guest.destroy()
                expect_errno(errno.EIO, guest.getattr, 1)  # no session until INIT
            guest.init()
            assert tree_fds(host.pid) == baseline
            assert guest.window.mapped_bytes() == 0  # unmapped through the back-end
            expect_errno(errno.EBADF, guest.read, file_id, fh, 0, 1)
            expect_errno(errno.EBADF, guest.readdir, 1, dh)
            expect_errno(errno.ESTALE, guest.getattr, file_id)
            expect_errno(errno.EINVAL, guest.removemapping, [(0, PAGE)])  # nothing mapped
            # the new session works, and hands out numbers the old one never had
            new_id, new_fh, new_dh = hold_everything(guest)
            assert new_id != file_id and new_fh not in (fh, dh)
            guest.write(new_id, new_fh, 0, b"new")
            assert (tmp_path / "file").read_bytes()[:3] == b"new"
            assert [e.name for e in guest.readdir(1, new_dh)].count(b"file") == 1
            assert guest.frontend.alive
        cause = "DESTROY" if ending.startswith("DESTROY") else "INIT on a live session"
        wait_until(lambda: "guest 1 disconnected" in host.log(), host, "the guest to go")
        lines = [line for line in host.log().splitlines() if "new FUSE session" in line]
        assert len(lines) == 1, lines  # after DESTROY, INIT opens no live session
        assert cause in lines[0]
        assert "released 1 nodeids, 2 handles, 1 mappings" in lines[-1]


def test_reset_in_a_read_only_export_and_without_a_window(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"data")
    with host_daemon(str(tmp_path), options=("--read-only",)) as host:
        with FuseClient.connect(host.socket_path, window_size=0) as guest:
            baseline = tree_fds(host.pid)
            file_id = guest.lookup(1, b"file").nodeid
            fh = guest.open(file_id, os.O_RDONLY).fh
            for _ in range(3):
                guest.init()
                assert tree_fds(host.pid) == baseline
                expect_errno(errno.EBADF, guest.read, file_id, fh, 0, 4)
            file_id = guest.lookup(1, b"file").nodeid
            fh = guest.open(file_id, os.O_RDONLY).fh
            assert guest.read(file_id, fh, 0, 4) == b"data"
