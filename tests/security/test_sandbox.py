"""SANDBOX on the real daemon, judged by a real front-end holding the donated fd: every
fd donated for a read mapping, and every fd of a read-only export, is on a read-only
mount, so reopening it for writing through /proc, fchmod or ftruncate through it are
EROFS, for root too (issue 11, defect 3)."""

from __future__ import annotations

import errno
import mmap
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from donations import observing
from pagefs_waits import wait_until

from pagefs.impl.client import host_daemon as host_daemon_module
from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon

from .conftest import expect_errno

PAGE = mmap.PAGESIZE
NO_FH = (1 << 64) - 1


@pytest.fixture
def kept() -> Iterator[list[int]]:
    """The front-end keeps a copy of every fd it is donated, as a hostile VMM would."""
    copies: list[int] = []
    with observing(lambda fd, *_: copies.append(os.dup(fd))):
        yield copies
    for fd in copies:
        os.close(fd)


def attempts_to_write(fd: int) -> dict[str, int | None]:
    """What each way of writing through a kept read-only fd gave (errno, None if it
    succeeded)."""
    results: dict[str, int | None] = {}

    def attempt(name: str, call) -> None:  # noqa: ANN001
        try:
            out = call()
            if isinstance(out, int) and name == "reopen O_RDWR":
                os.pwrite(out, b"X", 0)
                os.close(out)
            results[name] = None
        except OSError as err:
            results[name] = err.errno

    attempt("reopen O_RDWR", lambda: os.open(f"/proc/self/fd/{fd}", os.O_RDWR))
    attempt("fchmod", lambda: os.fchmod(fd, 0o4777))
    attempt("ftruncate", lambda: os.ftruncate(fd, 0))
    attempt("openat ..", lambda: os.open("..", os.O_RDONLY, dir_fd=fd))
    return results


@pytest.mark.parametrize("read_only", [False, True], ids=["rw-export", "ro-export"])
def test_a_donated_read_fd_cannot_be_upgraded(tmp_path: Path, kept: list[int],
                                              read_only: bool) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root: the attack is a root front-end's")
    (tmp_path / "file").write_bytes(b"R" * PAGE)
    (tmp_path / "file").chmod(0o644)
    with host_daemon(str(tmp_path), read_only=read_only) as host, \
            FuseClient.connect(host.socket_path, window_size=16 << 20) as guest:
        wait_until(lambda: "sandbox namespace" in host.log(), "the sandbox line", process=host)
        nodeid = guest.lookup(1, b"file").nodeid
        guest.setupmapping(nodeid, NO_FH, 0, PAGE, False, 0)
        fh = guest.open(nodeid, os.O_RDONLY).fh
        guest.setupmapping(nodeid, fh, 0, PAGE, False, PAGE)
    assert len(kept) == 2
    for fd in kept:
        assert attempts_to_write(fd) == {"reopen O_RDWR": errno.EROFS, "fchmod": errno.EROFS,
                                         "ftruncate": errno.EINVAL, "openat ..": errno.ENOTDIR}
    assert (tmp_path / "file").read_bytes() == b"R" * PAGE
    assert stat.S_IMODE((tmp_path / "file").stat().st_mode) == 0o644


def test_the_sandbox_leaves_the_hosts_mounts_alone(tmp_path: Path) -> None:
    with open("/proc/self/mountinfo") as before_file:
        before = before_file.read()
    with host_daemon(str(tmp_path)) as host:
        wait_until(lambda: "sandbox namespace" in host.log(), "the sandbox line", process=host)
        with open("/proc/self/mountinfo") as during:
            assert during.read() == before


# -- --sandbox chroot, and the default ---------------------------------------------------

def test_under_chroot_the_daemons_root_is_the_export_and_nothing_escapes(
        tmp_path: Path, kept: list[int], outside: Path) -> None:
    """The daemon's root is the export; '..' by name and through a donated fd reach
    nothing above it; and a tree the host placed at export/proc/self/fd, its links all
    pointing at the export's other file, does not redirect the calls the daemon makes
    through /proc (procfd): a SETATTR and reads act on the guest's own file, nothing
    outside changes. The OPENs, READs and the SETUPMAPPING are the C fast path's (its
    count in the disconnect line), so its reopen is the one judged: by the absolute
    /proc/self/fd/N it would open the decoy (b"D") under the chroot."""
    if os.geteuid() != 0:
        pytest.fail("needs root: chroot")
    export = tmp_path / "export"
    export.mkdir()
    (export / "file").write_bytes(b"C" * PAGE)
    (export / "decoy").write_bytes(b"D" * PAGE)
    decoys = export / "proc" / "self" / "fd"
    decoys.mkdir(parents=True)
    for n in range(256):  # inside the chroot, /decoy is the export's own other file
        os.symlink("/decoy", decoys / str(n))
    with host_daemon(str(export), options=("--sandbox", "chroot")) as host:
        with FuseClient.connect(host.socket_path, window_size=16 << 20) as guest:
            wait_until(lambda: "sandbox chroot" in host.log(), "the sandbox line",
                       process=host)
            assert os.readlink(f"/proc/{host.pid}/root") == str(export)
            expect_errno(errno.EINVAL, guest.lookup, 1, b"..")
            expect_errno(errno.EINVAL, guest.lookup, 1, b"../outside")
            nodeid = guest.lookup(1, b"file").nodeid
            guest.setattr(nodeid, None, size=PAGE // 2, mode=0o600)
            for flags in (os.O_RDONLY, os.O_RDWR):
                fh = guest.open(nodeid, flags).fh
                assert guest.read(nodeid, fh, 0, PAGE) == b"C" * (PAGE // 2)
            guest.setupmapping(nodeid, NO_FH, 0, PAGE, False, 0)
            assert len(kept) == 1
            expect_errno(errno.ENOTDIR, os.open, "..", os.O_RDONLY, dir_fd=kept[0])
            assert os.fstat(kept[0]).st_ino == (export / "file").stat().st_ino
        served = re.compile(r"(\d+) requests answered by the C fast path")
        wait_until(lambda: served.search(host.log()), "the disconnect line", process=host)
        found = served.search(host.log())
        assert found is not None
        # LOOKUP of "file", two OPENs, two READs and the SETUPMAPPING (whose donated fd
        # is the one judged above); the rest ('..', SETATTR, INIT) are the dispatcher's
        assert int(found.group(1)) == 6
    assert stat.S_IMODE((export / "file").stat().st_mode) == 0o600
    assert (outside / "secret").read_bytes() == b"host secret"
    assert (export / "decoy").read_bytes() == b"D" * PAGE


def _without(*capabilities: str) -> tuple[str, ...]:
    """pagefs-host run with these capabilities gone from its bounding set (so from root's
    effective set after exec), as a container that withholds them would."""
    drop = ",".join(f"-{c}" for c in capabilities)
    return ("setpriv", f"--bounding-set={drop}", *host_daemon_module.PAGEFS_HOST)


@pytest.mark.parametrize(("withheld", "expected"), [
    ((), "namespace"), (("sys_admin",), "chroot"), (("sys_admin", "sys_chroot"), "none")])
def test_the_default_sandbox_is_the_strongest_that_works(
        tmp_path: Path, withheld: tuple[str, ...], expected: str) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root: the modes are root's")
    program = _without(*withheld) if withheld else host_daemon_module.PAGEFS_HOST
    (tmp_path / "file").write_bytes(b"served")
    with host_daemon(str(tmp_path), program=program) as host, \
            FuseClient.connect(host.socket_path, window_size=0) as guest:
        wait_until(lambda: "sandbox " in host.log(), "the sandbox line", process=host)
        assert f"sandbox {expected}:" in host.log()
        nodeid = guest.lookup(1, b"file").nodeid
        fh = guest.open(nodeid, os.O_RDONLY).fh
        assert guest.read(nodeid, fh, 0, 10) == b"served"


def test_a_sandbox_asked_for_and_not_allowed_is_a_one_line_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root: the modes are root's")
    command = host_daemon_module.command(str(tmp_path / "s.sock"), str(tmp_path),
                                         "--sandbox", "chroot", program=_without("sys_chroot"))
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"pagefs-host: error: shared dir {tmp_path}: chroot needs CAP_SYS_CHROOT"]
