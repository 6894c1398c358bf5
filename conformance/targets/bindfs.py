"""`bindfs`: a FUSE mount (Debian's bindfs over fuse3) of a host directory, as a target.

The factory mounts two read-write views of one host directory (two guests, for
COH-PEER) and one read-only view (`-o ro`, for RO-EXPORT), and unmounts them all on
close. The guest side is then exactly `mount:HOSTDIR:GUESTDIR:GUESTDIR2`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from pagefs.conformance.targets.mount import MountFactory


def mount(source: str, mountpoint: str, *options: str) -> None:
    """Mount `source` on `mountpoint` with bindfs; one-line error if it cannot."""
    args = ["bindfs", *(a for o in options for a in ("-o", o)), source, mountpoint]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if done.returncode != 0 or not os.path.ismount(mountpoint):
        raise OSError(f"bindfs {source} {mountpoint}: {done.stderr.strip() or 'not mounted'}")


def unmount(mountpoint: str) -> None:
    """Unmount a FUSE mount (the bindfs process exits with it)."""
    if os.path.ismount(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", mountpoint], capture_output=True,
                       timeout=30, check=True)


@contextmanager
def mounted(source: str, mountpoint: str, *options: str) -> Iterator[str]:
    mount(source, mountpoint, *options)
    try:
        yield mountpoint
    finally:
        unmount(mountpoint)


class BindfsFactory(MountFactory):
    def __init__(self) -> None:
        self._base = tempfile.mkdtemp(prefix="pagefs-conformance-bindfs.")
        host, views = os.path.join(self._base, "host"), []
        self._mounts: list[str] = []
        os.mkdir(host)
        try:
            for name, options in (("guest0", ()), ("guest1", ()), ("ro", ("ro",))):
                point = os.path.join(self._base, name)
                os.mkdir(point)
                mount(host, point, *options)
                self._mounts.append(point)
                views.append(point)
        except BaseException:
            self.close()
            raise
        super().__init__(host, views[:2], ro_guestdir=views[2], name="bindfs")

    def close(self) -> None:
        for point in reversed(self._mounts):
            unmount(point)
        self._mounts.clear()
        shutil.rmtree(self._base, ignore_errors=True)
