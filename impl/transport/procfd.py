"""The path of an open descriptor's /proc magic link, valid in and out of a chroot, and
the descriptor of the directory those links live in.

Some calls take only a path (truncate, utimensat on an O_PATH fd, the xattr calls, link
of a pinned inode): the daemon gives them /proc/self/fd/N. Under `--sandbox chroot` the
daemon's root is the export, where no /proc is (and where a guest could make a directory
of that name), so before the chroot the working directory becomes the process's own fd
directory and the path becomes the bare number, relative to it, as virtiofsd keeps its
proc_self_fd. The reopen of an inode (Python's and the host's C fast path alike) goes by
`directory()`, an fd on that same directory: openat(directory(), "N") resolves nothing
from the root, chroot or not.

A child of the daemon (fork) inherits the parent's descriptor and working directory,
both naming the parent's fd table: in the child the same descriptor number is pointed at
the child's own fd directory (through a descriptor of /proc kept from before the chroot)
and, under the chroot, the working directory follows it.
"""

from __future__ import annotations

import os

_base = "/proc/self/fd/"
_DIRECTORY_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_proc = -1  # /proc, opened before any chroot: a child finds its own fd directory by it
_directory = -1  # this process's fd directory (the same number in every child)


def path(fd: int) -> str:
    """A path naming what `fd` is open on (the link itself is followed by the call)."""
    return f"{_base}{fd}"


def directory() -> int:
    """An O_PATH descriptor of this process's own fd directory: openat(directory(), str(N))
    opens what N is open on (opened on first use; call it before any chroot)."""
    global _proc, _directory
    if _directory < 0:
        _proc = os.open("/proc", _DIRECTORY_FLAGS)
        _directory = os.open(f"{os.getpid()}/fd", _DIRECTORY_FLAGS, dir_fd=_proc)
    return _directory


def reopen(fd: int, flags: int) -> int:
    """Open anew, with `flags`, the inode `fd` is open on (O_CLOEXEC added)."""
    return os.open(str(fd), flags | os.O_CLOEXEC, dir_fd=directory())


def through_working_directory() -> None:
    """From now on this process's fd directory is its working directory and `path` is
    relative to it: called just before the process leaves /proc behind (chroot)."""
    global _base
    os.fchdir(directory())
    _base = ""


def _in_child() -> None:
    """After fork: the inherited descriptor (and, under chroot, the working directory)
    name the parent's fd table; point both at this process's own, by the same number."""
    if _directory < 0:
        return
    try:
        own = os.open(f"{os.getpid()}/fd", _DIRECTORY_FLAGS, dir_fd=_proc)
        os.dup2(own, _directory, inheritable=False)
        os.close(own)
        if _base == "":
            os.fchdir(_directory)
    except OSError as err:
        # An at-fork hook's exception is only printed, and this child would then reopen
        # its own descriptor numbers in the parent's fd table: it ends instead.
        os.write(2, f"pagefs: a child cannot reach its own fd directory: {err}\n".encode())
        os._exit(1)


os.register_at_fork(after_in_child=_in_child)
