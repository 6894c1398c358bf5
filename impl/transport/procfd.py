"""The path of an open descriptor's /proc magic link, valid in and out of a chroot.

Some calls take only a path (truncate, utimensat on an O_PATH fd, the xattr calls, link
of a pinned inode, the reopen of an inode): the daemon gives them /proc/self/fd/N. Under
`--sandbox chroot` the daemon's root is the export, where no /proc is (and where a guest
could make a directory of that name), so before the chroot the working directory becomes
the process's own fd directory and the path becomes the bare number, relative to it, as
virtiofsd keeps its proc_self_fd.
"""

from __future__ import annotations

import os

_base = "/proc/self/fd/"


def path(fd: int) -> str:
    """A path naming what `fd` is open on (the link itself is followed by the call)."""
    return f"{_base}{fd}"


def through_working_directory() -> None:
    """From now on this process's fd directory is its working directory and `path` is
    relative to it: called just before the process leaves /proc behind (chroot)."""
    global _base
    os.chdir(f"/proc/{os.getpid()}/fd")
    _base = ""
