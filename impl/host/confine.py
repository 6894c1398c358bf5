"""CONFINE: how the passthrough layer names host files without ever leaving the export.

Every host path the daemon touches is one validated name resolved relative to an
O_PATH descriptor of its parent directory, with no symlink followed and no '..'
(openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, or
O_NOFOLLOW on kernels without openat2). Files are opened for I/O only by reopening
such an O_PATH descriptor after fstat shows a regular file or a directory, so a device
node or a FIFO planted in the export is never opened on the host's side.
"""

from __future__ import annotations

import errno
import os
import stat

from pagefs.impl.transport import procfd

from . import syscalls

NAME_MAX = 255
PATH_MAX = 4096

# Linux uapi: include/uapi/linux/openat2.h
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS

# Flags a guest may ask for when opening a file; the rest (O_NOFOLLOW, O_CREAT, O_EXCL,
# O_DIRECTORY, O_PATH, ...) are the daemon's business, not the guest's.
GUEST_OPEN_FLAGS = os.O_ACCMODE | os.O_APPEND | os.O_TRUNC | os.O_SYNC | os.O_DSYNC


_have_openat2 = True


def check_name(name: bytes) -> None:
    """A directory entry name from a guest is one component of the export's namespace.

    Empty names do not exist (ENOENT); '/' or NUL would make a path, not a name (EINVAL);
    '.' and '..' are resolved by the guest itself and never name an entry over the wire
    (EINVAL), which also keeps '..' from climbing past the export root; names longer than
    NAME_MAX bytes cannot exist (ENAMETOOLONG).
    """
    if not name:
        raise OSError(errno.ENOENT, "empty name")
    if b"/" in name or b"\0" in name:
        raise OSError(errno.EINVAL, "name contains '/' or NUL")
    if name in (b".", b".."):
        raise OSError(errno.EINVAL, "'.' and '..' are not entry names")
    if len(name) > NAME_MAX:
        raise OSError(errno.ENAMETOOLONG, "name longer than NAME_MAX")


def check_symlink_target(target: bytes) -> None:
    """A symlink's target is stored, never followed by the host, but must be a valid path."""
    if not target:
        raise OSError(errno.ENOENT, "empty symlink target")
    if b"\0" in target:
        raise OSError(errno.EINVAL, "symlink target contains NUL")
    if len(target) >= PATH_MAX:
        raise OSError(errno.ENAMETOOLONG, "symlink target longer than PATH_MAX")



def open_beneath(dirfd: int, name: bytes, flags: int, mode: int = 0) -> int:
    """Open one validated `name` in directory `dirfd` without following any symlink.

    With O_PATH | O_NOFOLLOW a symlink itself is opened (for LOOKUP and READLINK);
    otherwise a symlink as the last component fails with ELOOP.
    """
    global _have_openat2
    if _have_openat2:
        try:
            return syscalls.openat2(dirfd, name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                                    _RESOLVE)
        except OSError as err:
            if err.errno != errno.ENOSYS:
                raise
            _have_openat2 = False
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dirfd)


def lookup_fd(dirfd: int, name: bytes) -> int:
    """An O_PATH descriptor for `name` in `dirfd`: it pins the inode but opens nothing."""
    return open_beneath(dirfd, name, os.O_PATH)


def reopen(path_fd: int, flags: int, kind: int | None = None) -> int:
    """Open for I/O the inode behind an O_PATH descriptor, if it is a file or directory.

    The O_PATH descriptor pins one inode, so the fstat and the reopen see the same file
    whatever a host process renames meanwhile; a caller that already knows the inode's
    type (`kind`, its stat.S_IFMT, fixed for the inode's life) spares the fstat. Device
    nodes and FIFOs are refused with EACCES (as on a nodev mount), sockets with ENXIO,
    symlinks with ELOOP.
    """
    mode = os.fstat(path_fd).st_mode if kind is None else kind
    if stat.S_ISDIR(mode):
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EISDIR, "directory opened for writing")
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=path_fd)
    if stat.S_ISLNK(mode):
        raise OSError(errno.ELOOP, "symlink opened")
    if stat.S_ISSOCK(mode):
        raise OSError(errno.ENXIO, "socket opened")
    if not stat.S_ISREG(mode):
        raise OSError(errno.EACCES, "device node or FIFO opened")
    return procfd.reopen(path_fd, flags & GUEST_OPEN_FLAGS)


def proc_path(path_fd: int) -> str:
    """The /proc magic link of a descriptor, for the calls that take only a path."""
    return procfd.path(path_fd)
