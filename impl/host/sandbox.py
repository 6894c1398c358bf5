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

`--sandbox chroot` (virtiofsd's mode for containers that made the namespaces already,
where mounting is not allowed): the daemon chroots into the export once its socket is
bound, so no path it resolves can name anything above the export. It has no read-only
mount: donated read descriptors are O_RDONLY, but a front-end with the right to write
the file can reopen them for writing, as under `none`.

`--sandbox none` opens the export by its path in the host's namespace, with the same
limit on donated read descriptors.

With no `--sandbox`, the daemon takes the strongest mode that works here, in the order
of STRENGTH: namespace where it may mount, else chroot where it may chroot, else none.
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass

from pagefs.impl.host._sandbox import ffi, lib
from pagefs.impl.transport import procfd

STRENGTH = ("namespace", "chroot", "none")  # strongest first
MODES = STRENGTH
CAP_SYS_CHROOT = 18


@dataclass(frozen=True)
class ExportRoots:
    """Descriptors of the export as served (O_PATH), and of a read-only view of it (the
    same descriptor when there is no read-only mount)."""

    served: int
    read_only: int
    how: str
    mode: str = "none"

    def close(self) -> None:
        os.close(self.served)
        if self.read_only != self.served:
            os.close(self.read_only)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")


_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


def open_roots(export: str, mode: str | None, *, read_only: bool) -> ExportRoots:
    """The export's root descriptors under `mode` (OSError if the mode cannot be had);
    None: the strongest mode that works here."""
    os.close(os.open(export, _FLAGS))  # a missing export or a file: its own error first
    if mode is not None:
        return _open_roots(export, mode, read_only)
    for candidate in STRENGTH:
        if candidate == "chroot" and not may_chroot():
            continue
        try:
            return _open_roots(export, candidate, read_only)
        except OSError:
            if candidate == STRENGTH[-1]:
                raise
    raise AssertionError("unreachable: the last mode raises or returns")


def _open_roots(export: str, mode: str, read_only: bool) -> ExportRoots:
    if mode == "chroot" and not may_chroot():
        raise OSError(errno.EPERM, "chroot needs CAP_SYS_CHROOT")
    if mode in ("none", "chroot"):
        fd = os.open(export, _FLAGS)
        how = ("chroot: the daemon's root is the export (no read-only mount)"
               if mode == "chroot" else "none: the export's own mount")
        return ExportRoots(fd, fd, how, mode)
    if mode != "namespace":
        raise OSError(errno.EINVAL, f"no sandbox mode {mode!r}")
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
        roots = ExportRoots(os.open(served, _FLAGS), view_fd,
                            "namespace: private read-only mount for donated read fds"
                            + (" and the whole export" if read_only else ""), mode)
    finally:  # the mounts live on through the descriptors alone
        lib.umount2(staging.encode(), lib.MNT_DETACH)
        os.rmdir(staging)
    return roots


def reopen_read_only(fd: int, roots: ExportRoots) -> int:
    """The inode open at `fd`, opened O_RDONLY through the read-only view."""
    if roots.read_only == roots.served:
        return procfd.reopen(fd, os.O_RDONLY)
    opened = lib.pagefs_reopen_through(fd, roots.read_only, os.O_RDONLY | os.O_CLOEXEC)
    if opened < 0:
        err = ffi.errno
        raise OSError(err, f"reopen through the read-only mount: {os.strerror(err)}")
    return opened


def enter(roots: ExportRoots) -> None:
    """What a mode does to the whole process once the daemon's socket is bound: under
    chroot, the export becomes its root (by the descriptor: the path may have moved)."""
    if roots.mode != "chroot":
        return
    procfd.through_working_directory()
    os.chroot(f"/proc/self/fd/{roots.served}")
    # the working directory stays the process's fd directory (procfd): no path the
    # daemon resolves from the root reaches above the export


def may_chroot() -> bool:
    """Whether this process holds CAP_SYS_CHROOT (in its effective set)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_CHROOT & 1)
    return False
