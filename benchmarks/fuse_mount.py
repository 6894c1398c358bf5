"""A FUSE mount of a host directory (bindfs), for reads through the kernel's FUSE client.

The mount is always undone when the `with` block ends, on error too: a lazy unmount is
the last resort, so no mount outlives the benchmark.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from harness import MissingComponent

MOUNT_TIMEOUT = 10.0


def _unmount(mountpoint: str) -> None:
    for command in (["fusermount3", "-u", mountpoint], ["umount", mountpoint]):
        for _ in range(20):  # a file still closing keeps the mount busy for a moment
            if not os.path.ismount(mountpoint):
                return
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.05)
    subprocess.run(["umount", "-l", mountpoint], stderr=subprocess.DEVNULL)


def check_bindfs() -> None:
    """MissingComponent unless bindfs, fusermount3 and /dev/fuse are there."""
    for binary in ("bindfs", "fusermount3"):
        if shutil.which(binary) is None:
            raise MissingComponent(f"{binary} not found: apt-get install bindfs fuse3")
    if not os.path.exists("/dev/fuse"):
        raise MissingComponent("/dev/fuse is missing: FUSE mounts are not possible here")


@contextmanager
def bindfs_mount(source: str, mountpoint: str, *options: str) -> Iterator[str]:
    """Mount `source` at `mountpoint` with bindfs (extra FUSE `-o` options, e.g.
    "direct_io"); yields the mountpoint."""
    check_bindfs()
    os.makedirs(mountpoint, exist_ok=True)
    command = ["bindfs", *(arg for o in options for arg in ("-o", o)), source, mountpoint]
    try:
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=MOUNT_TIMEOUT)
        except subprocess.TimeoutExpired as err:
            raise MissingComponent(f"bindfs did not mount {source} in {MOUNT_TIMEOUT} s") from err
        if done.returncode != 0 or not os.path.ismount(mountpoint):
            raise MissingComponent(f"bindfs could not mount {source}: "
                                   f"{done.stderr.strip() or 'no mount appeared'}")
        yield mountpoint
    finally:
        _unmount(mountpoint)
