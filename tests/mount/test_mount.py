"""pagefs-mount over a real pagefs-host: files, coherence with the host, passthrough,
read-only, options, SIGTERM and a back-end that goes away."""

from __future__ import annotations

import errno
import mmap
import os
import subprocess
import sys
import threading

import pytest

from pagefs.conformance.exerciser import run as exercise
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.client.mount_process import PAGEFS_MOUNT, is_mounted, pagefs_mount


def test_files_made_on_either_side_show_on_the_other(mounted, export, mountpoint):
    assert mounted.passthrough, mounted.log()
    assert (mountpoint / "file").read_bytes() == b"0123456789"
    (mountpoint / "dir").mkdir()
    (mountpoint / "dir" / "new").write_bytes(b"from the mount")
    assert (export / "dir" / "new").read_bytes() == b"from the mount"
    (export / "dir" / "host").write_bytes(b"from the host")
    assert sorted(os.listdir(mountpoint / "dir")) == ["host", "new"]
    os.rename(mountpoint / "dir" / "host", mountpoint / "dir" / "moved")
    os.symlink("moved", mountpoint / "dir" / "link")
    assert os.readlink(export / "dir" / "link") == "moved"
    assert (mountpoint / "dir" / "link").read_bytes() == b"from the host"
    os.unlink(mountpoint / "dir" / "moved")
    assert not (export / "dir" / "moved").exists()


def test_a_mapping_sees_the_hosts_writes_without_msync(mounted, export, mountpoint):
    """Passthrough maps the host file itself: one page cache, both ways (COH-READ/WRITE)."""
    fd = os.open(mountpoint / "file", os.O_RDWR)
    try:
        view = mmap.mmap(fd, 10)
        with open(export / "file", "r+b") as host_file:
            host_file.write(b"HOST")
            host_file.flush()
            assert view[:4] == b"HOST"
            view[4:8] = b"MNT!"
            host_file.seek(0)
            assert host_file.read() == b"HOSTMNT!89"
        view.close()
    finally:
        os.close(fd)


def test_one_file_open_many_ways_at_once(mounted, export, mountpoint):
    """Every passthrough open of a file shares one backing file (the kernel allows no
    other), whatever each open's access; the handles keep their own access."""
    path = mountpoint / "file"
    with open(path, "rb") as r, open(path, "r+b") as w, open(path, "ab") as a:
        w.write(b"AB")
        w.flush()
        a.write(b"Z")
        a.flush()
        assert r.read() == b"AB23456789Z"
        with pytest.raises(OSError) as caught:
            os.write(r.fileno(), b"no")
        assert caught.value.errno == errno.EBADF
    with open(path, "rb") as again:  # the backing file was let go and taken again
        assert again.read() == b"AB23456789Z"
    assert (export / "file").read_bytes() == b"AB23456789Z"


def test_reopened_files_are_the_current_host_files(mounted, export, mountpoint):
    """A backing file stays registered after its last close, for the next open; a file
    replaced on the host is a new nodeid, and the old backing is never served for it."""
    path = mountpoint / "file"
    for round_ in range(3):
        with open(path, "r+b") as f:
            f.write(b"%d" % round_)
        assert (export / "file").read_bytes()[:1] == b"%d" % round_
    (export / "new").write_bytes(b"replacement")
    os.rename(export / "new", export / "file")
    assert path.read_bytes() == b"replacement"
    os.unlink(mountpoint / "file")
    (mountpoint / "file").write_bytes(b"again")
    assert path.read_bytes() == b"again" == (export / "file").read_bytes()


def test_relayed_reads_see_the_hosts_writes(relayed, export, mountpoint):
    assert not relayed.passthrough, relayed.log()
    with open(mountpoint / "file", "rb") as f:
        assert f.read() == b"0123456789"
        (export / "file").write_bytes(b"abcdefghij")
        f.seek(0)
        assert f.read() == b"abcdefghij"


# with mmap: ~35 s on 2 cores, in make test-all; without, in make test
@pytest.mark.parametrize("use_mmap", [pytest.param(True, marks=pytest.mark.slow), False],
                         ids=["mmap", "no-mmap"])
def test_exerciser_holds_with_passthrough(mounted, mountpoint, use_mmap):
    outcome = exercise(str(mountpoint / "fsx"), ops=5_000, seed=21, mmap=use_mmap)
    assert outcome.held, outcome.output


@pytest.mark.parametrize("use_mmap", [pytest.param(True, marks=pytest.mark.slow), False],
                         ids=["mmap", "no-mmap"])
def test_exerciser_holds_relayed(relayed, mountpoint, use_mmap):
    outcome = exercise(str(mountpoint / "fsx"), ops=3_000, seed=22, mmap=use_mmap)
    assert outcome.held, outcome.output


def test_read_only_mount_refuses_writes(host, export, mountpoint):
    with pagefs_mount(host.socket_path, str(mountpoint), read_only=True):
        assert (mountpoint / "file").read_bytes() == b"0123456789"
        with pytest.raises(OSError) as caught:
            (mountpoint / "other").write_bytes(b"x")
        assert caught.value.errno == errno.EROFS
    assert not (export / "other").exists()


def test_read_only_export_refuses_writes_through_a_writable_mount(export, mountpoint):
    with host_daemon(str(export), read_only=True) as ro_host, \
            pagefs_mount(ro_host.socket_path, str(mountpoint)):
        assert (mountpoint / "file").read_bytes() == b"0123456789"
        with pytest.raises(OSError) as caught:
            with open(mountpoint / "file", "r+b") as f:
                f.write(b"x")
        assert caught.value.errno == errno.EROFS
    assert (export / "file").read_bytes() == b"0123456789"


def test_timeouts_and_allow_other_are_taken(host, mountpoint):
    with pagefs_mount(host.socket_path, str(mountpoint),
                      options=("allow_other,attr_timeout=1.5,entry_timeout=0.25",)):
        with open("/proc/self/mountinfo") as f:
            line = next(li for li in f if f" {mountpoint} " in li)
        assert "allow_other" in line
        assert (mountpoint / "file").stat().st_size == 10


@pytest.mark.parametrize("argv, message", [
    (["-o", "bogus"], "unknown mount option 'bogus' (known: ro, allow_other, "
                          "attr_timeout=S, entry_timeout=S)"),
    (["-o", "attr_timeout=soon"], "attr_timeout must be a number of seconds, not 'soon'"),
    (["-o", "entry_timeout=-1"], "entry_timeout must be 0 or more seconds, not '-1'"),
])
def test_bad_options_are_one_line(host, mountpoint, argv, message):
    done = subprocess.run([*PAGEFS_MOUNT, host.socket_path, str(mountpoint), *argv],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"pagefs-mount: {message}"]
    assert not is_mounted(str(mountpoint))


def test_no_back_end_is_one_line(tmp_path, mountpoint):
    done = subprocess.run([*PAGEFS_MOUNT, str(tmp_path / "nothing.sock"), str(mountpoint)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pagefs-mount: cannot reach a back-end at")


def test_losing_the_back_end_gives_enotconn_not_a_hang(export, mountpoint):
    with host_daemon(str(export)) as doomed:
        with pagefs_mount(doomed.socket_path, str(mountpoint), passthrough=False,
                          expect_status=1):
            held = open(mountpoint / "file", "rb")
            doomed.process.kill()
            doomed.process.wait()
            errors = []

            def attempt() -> None:
                for call in (lambda: os.stat(mountpoint / "file"), lambda: held.read()):
                    try:
                        call()
                    except OSError as e:
                        errors.append(e.errno)

            worker = threading.Thread(target=attempt)
            worker.start()
            worker.join(30)
            assert not worker.is_alive(), "a caller hung after the back-end went"
            assert errors == [errno.ENOTCONN, errno.ENOTCONN]
            with pytest.raises(OSError) as caught:
                held.close()  # FLUSH, too, has no one to go to
            assert caught.value.errno == errno.ENOTCONN
        doomed.returncode = -9  # killed on purpose; the launcher need not judge it


def test_sigterm_unmounts_even_with_a_file_open(host, mountpoint):
    with pagefs_mount(host.socket_path, str(mountpoint)) as mount:
        held = open(mountpoint / "file", "rb")
        mount.process.terminate()
        assert mount.process.wait(30) == 0, mount.log()
        assert not is_mounted(str(mountpoint))
        with pytest.raises(OSError) as caught:
            held.close()  # the connection went with the process
        assert caught.value.errno == errno.ENOTCONN


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "pagefs-mount")
    done = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "SOCKET" in done.stdout.upper() and "--read-only" in done.stdout
