"""Start pagefs-mount as a subprocess, for tests, the conformance suite and benchmarks.

    with pagefs_mount(host.socket_path, "/mnt/share") as mount:
        open("/mnt/share/f").read()
    # SIGTERM: unmounted, the process gone, its exit status checked

Ready when the mount point shows in /proc/self/mountinfo as a fuse.pagefs mount. If
the process holding the `with` block is killed, pagefs-mount gets SIGTERM from the
kernel (client/child.py) and unmounts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pagefs.impl.client.child import die_with_parent

PAGEFS_MOUNT = (sys.executable, "-m", "pagefs.impl.mount.cli")
FSTYPE = "fuse.pagefs"


class MountError(RuntimeError):
    """pagefs-mount did not mount, or did not unmount and exit cleanly."""


@dataclass
class MountProcess:
    mountpoint: str
    process: subprocess.Popen
    log_file: object

    def log(self) -> str:
        self.log_file.seek(0)  # type: ignore[attr-defined]
        return self.log_file.read().decode(errors="replace").strip()  # type: ignore[attr-defined]

    @property
    def passthrough(self) -> bool:
        """Whether files are backed by host fds (pagefs-mount -v says so when mounted)."""
        return "passthrough on" in self.log()


def is_mounted(mountpoint: str, fstype: str = FSTYPE) -> bool:
    """Whether a `fstype` mount sits on `mountpoint` now (mountinfo, never the mount)."""
    target = os.path.abspath(mountpoint)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4] == target and fields[sep + 1] == fstype:
                return True
    return False


@contextmanager
def pagefs_mount(socket_path: str, mountpoint: str, *, read_only: bool = False,
                 passthrough: bool = True, options: tuple[str, ...] = (),
                 start_timeout: float = 30.0, stop_timeout: float = 10.0,
                 expect_status: int = 0) -> Iterator[MountProcess]:
    """pagefs-mount SOCKET MOUNTPOINT for the `with` block; the exit status must be
    `expect_status` (1 when the block loses the back-end on purpose)."""
    args = [*PAGEFS_MOUNT, "-v", socket_path, mountpoint]
    if read_only:
        args.append("--read-only")
    if not passthrough:
        args.append("--no-passthrough")
    for option in options:
        args += ["-o", option]
    log_file = tempfile.TemporaryFile()
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_file,
                               stderr=subprocess.STDOUT, preexec_fn=die_with_parent())
    mount = MountProcess(os.path.abspath(mountpoint), process, log_file)
    try:
        deadline = time.monotonic() + start_timeout
        while not (is_mounted(mountpoint) and "passthrough" in mount.log()):
            if process.poll() is not None:
                raise MountError(f"pagefs-mount exited with {process.returncode}: {mount.log()}")
            if time.monotonic() > deadline:
                raise MountError(f"pagefs-mount not mounted after {start_timeout} s: "
                                 f"{mount.log()}")
            time.sleep(0.02)
        yield mount
    finally:
        status = _stop(mount, stop_timeout)
        log = mount.log()
        log_file.close()
    if is_mounted(mountpoint):
        raise MountError(f"{mountpoint} still mounted after pagefs-mount exited: {log}")
    if status != expect_status:
        raise MountError(f"pagefs-mount exited with {status}, not {expect_status}: {log}")


def _stop(mount: MountProcess, timeout: float) -> int:
    if mount.process.poll() is None:
        mount.process.send_signal(signal.SIGTERM)
    try:
        return mount.process.wait(timeout)
    except subprocess.TimeoutExpired:
        mount.process.kill()
        mount.process.wait()
        # the kernel keeps a dead server's mount: take it away so nothing hangs on it
        subprocess.run(["umount", "-l", mount.mountpoint], capture_output=True)
        raise MountError(f"pagefs-mount did not stop within {timeout} s: {mount.log()}") \
            from None
