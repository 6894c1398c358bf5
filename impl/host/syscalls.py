"""The few Linux calls the os module lacks: openat2, renameat2, utimensat with
UTIME_OMIT, fallocate with a mode, syncfs, the parent-death signal (C via cffi,
_syscalls_build.py). Each raises OSError(errno) like the os module does."""

from __future__ import annotations

import os

from pagefs.impl.host._syscalls import ffi, lib

UTIME_OMIT = lib.UTIME_OMIT


def _raise_errno() -> None:
    err = ffi.errno
    raise OSError(err, os.strerror(err))


def openat2(dirfd: int, name: bytes, flags: int, mode: int, resolve: int) -> int:
    fd = lib.pagefs_openat2(dirfd, name, flags, mode, resolve)
    if fd < 0:
        _raise_errno()
    return fd


def renameat2(olddirfd: int, oldname: bytes, newdirfd: int, newname: bytes, flags: int) -> None:
    if lib.renameat2(olddirfd, oldname, newdirfd, newname, flags) != 0:
        _raise_errno()


def _timespec(ns: int | None) -> tuple[int, int]:
    if ns is None:
        return (0, UTIME_OMIT)
    return divmod(ns, 1_000_000_000)


def utimens(path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
    """Set either time or both; a time given as None is left as it is."""
    times = ffi.new("struct timespec[2]", [_timespec(atime_ns), _timespec(mtime_ns)])
    if lib.utimensat(lib.AT_FDCWD, os.fsencode(path), times, 0) != 0:
        _raise_errno()


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2): FALLOC_FL_KEEP_SIZE, _PUNCH_HOLE, _ZERO_RANGE and the rest by `mode`."""
    if lib.fallocate(fd, mode, offset, length) != 0:
        _raise_errno()


def syncfs(fd: int) -> None:
    """syncfs(2): write back the whole filesystem that holds `fd` (an open, not O_PATH, fd)."""
    if lib.syncfs(fd) != 0:
        _raise_errno()


def die_with_parent(signum: int, parent: int) -> None:
    """This process (a child of `parent`) gets `signum` when its parent dies, at once if
    it already has."""
    if lib.pagefs_pdeathsig(signum) != 0:
        _raise_errno()
    if os.getppid() != parent:  # the parent died before the prctl took
        os.kill(os.getpid(), signum)
