"""SANDBOX: the descriptors the daemon holds and donates come from mounts it made itself.

`--sandbox namespace` (the default where it works; virtiofsd's strongest mode too): at
start the daemon enters a mount namespace of its own (changes there never reach the
host's), binds the export twice into a private tmpfs, once as exported (read-only for a
read-only export) and once read-only, opens the roots of both, and detaches the tmpfs:
from then on the export is reachable only through those two descriptors. Every nodeid
and handle descends from the first; every descriptor donated for a read mapping is the
same inode reopened through the second (open_by_handle_at). An fd on a read-only mount
cannot be upgraded: reopening /proc/self/fd/N for writing, fchmod, or truncate through it
is EROFS, for root too, whatever the front-end that holds it does. In a read-only export
every descriptor is on a read-only mount.

`--sandbox none` opens the export by its path in the host's namespace: donated read
descriptors are O_RDONLY, but a front-end with the right to write the file can reopen
them for writing. (virtiofsd's `chroot` mode, for containers that made the namespaces
already, is not offered: it gives no read-only mount.)
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass

from pagefs.impl.host._sandbox import ffi, lib

MODES = ("namespace", "none")


@dataclass(frozen=True)
class ExportRoots:
    """Descriptors of the export as served (O_PATH), and of a read-only view of it (the
    same descriptor when there is no read-only mount)."""

    served: int
    read_only: int
    how: str

    def close(self) -> None:
        os.close(self.served)
        if self.read_only != self.served:
            os.close(self.read_only)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")


def open_roots(export: str, mode: str, *, read_only: bool) -> ExportRoots:
    """The export's root descriptors under `mode` (OSError if the mode cannot be had)."""
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    if mode == "none":
        fd = os.open(export, flags)
        return ExportRoots(fd, fd, "none: the export's own mount")
    if mode != "namespace":
        raise OSError(errno.EINVAL, f"no sandbox mode {mode!r}")
    os.close(os.open(export, flags))  # a missing export or a file: its own error first
    _check(lib.unshare(lib.CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(lib.mount(b"none", b"/", ffi.NULL, lib.MS_REC | lib.MS_SLAVE, ffi.NULL),
           "mount --make-rslave /")
    staging = tempfile.mkdtemp(prefix="pagefs-sandbox-")
    try:
        _check(lib.mount(b"pagefs", staging.encode(), b"tmpfs",
                         lib.MS_NOSUID | lib.MS_NODEV, b"size=4k,mode=700"), "tmpfs")
        served, view = os.path.join(staging, "export"), os.path.join(staging, "read-only")
        os.mkdir(served)
        os.mkdir(view)
        for target, ro in ((served, read_only), (view, True)):
            _check(lib.mount(export.encode(), target.encode(), ffi.NULL,
                             lib.MS_BIND | lib.MS_REC, ffi.NULL), f"bind {target}")
            if ro:
                _check(lib.mount(ffi.NULL, target.encode(), ffi.NULL,
                                 lib.MS_REMOUNT | lib.MS_BIND | lib.MS_RDONLY, ffi.NULL),
                       f"read-only {target}")
        # the view is open for reading, not O_PATH: open_by_handle_at takes no O_PATH fd
        view_fd = os.open(view, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        roots = ExportRoots(os.open(served, flags), view_fd,
                            "namespace: private read-only mount for donated read fds"
                            + (" and the whole export" if read_only else ""))
    finally:  # the mounts live on through the descriptors alone
        lib.umount2(staging.encode(), lib.MNT_DETACH)
        os.rmdir(staging)
    return roots


def reopen_read_only(fd: int, roots: ExportRoots) -> int:
    """The inode open at `fd`, opened O_RDONLY through the read-only view."""
    if roots.read_only == roots.served:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    opened = lib.pagefs_reopen_through(fd, roots.read_only, os.O_RDONLY | os.O_CLOEXEC)
    if opened < 0:
        err = ffi.errno
        raise OSError(err, f"reopen through the read-only mount: {os.strerror(err)}")
    return opened


def default_mode() -> str:
    """The strongest mode that works here: namespace for root, else none."""
    return "namespace" if os.geteuid() == 0 else "none"
