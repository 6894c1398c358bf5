"""`pagefs-mount[:relay]`: pagefs-host's export mounted by pagefs-mount, beside its host
directory.

Two read-write mounts of one pagefs-host (two guests, for COH-PEER) and a read-only
mount of a read-only pagefs-host on the same directory (RO-EXPORT); the guest side is
then syscalls and mmap through the kernel's FUSE client, exactly `mount:HOST:G1:G2`.
With files passed through, mmap and read(2) run on the host's own pages; `relay` turns
passthrough off, so READ and WRITE travel through pagefs-mount and the kernel keeps a
page cache of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from pagefs.conformance.targets.mount import MountFactory


class PagefsMountFactory(MountFactory):
    def __init__(self, passthrough: bool = True) -> None:
        from pagefs.impl.client.host_daemon import host_daemon
        from pagefs.impl.client.mount_process import pagefs_mount
        self._base = tempfile.mkdtemp(prefix="pagefs-conformance-mount.")
        self._stack = contextlib.ExitStack()
        host = os.path.join(self._base, "host")
        os.mkdir(host)
        views = []
        try:
            rw = self._stack.enter_context(host_daemon(host))
            ro = self._stack.enter_context(host_daemon(host, read_only=True))
            for name, daemon in (("guest0", rw), ("guest1", rw), ("ro", ro)):
                point = os.path.join(self._base, name)
                os.mkdir(point)
                mount = self._stack.enter_context(pagefs_mount(
                    daemon.socket_path, point, read_only=daemon is ro, passthrough=passthrough))
                if passthrough and not mount.passthrough:
                    raise OSError(f"pagefs-mount could not pass files through: {mount.log()}")
                views.append(point)
        except BaseException:
            self.close()
            raise
        name = "pagefs-mount" if passthrough else "pagefs-mount:relay"
        super().__init__(host, views[:2], ro_guestdir=views[2], name=name)

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            shutil.rmtree(self._base, ignore_errors=True)


def parse(spec: str) -> PagefsMountFactory:
    """`pagefs-mount` (files passed through) or `pagefs-mount:relay` (READ/WRITE relayed)."""
    _, _, argument = spec.partition(":")
    if argument not in ("", "relay"):
        raise ValueError("usage: pagefs-mount[:relay]")
    return PagefsMountFactory(passthrough=argument != "relay")
