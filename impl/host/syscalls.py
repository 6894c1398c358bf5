"""The few Linux calls the os module lacks, through libc (ctypes): openat2, renameat2,
utimensat with UTIME_OMIT. Each raises OSError(errno) like the os module does."""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# Linux uapi: include/uapi/linux/openat2.h; the syscall number is the same on every arch.
SYS_OPENAT2 = 437
UTIME_OMIT = (1 << 30) - 2
_AT_FDCWD = -100


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _raise_errno() -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))


def openat2(dirfd: int, name: bytes, flags: int, mode: int, resolve: int) -> int:
    how = _OpenHow(flags, mode, resolve)
    fd = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(name),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        _raise_errno()
    return fd


def renameat2(olddirfd: int, oldname: bytes, newdirfd: int, newname: bytes, flags: int) -> None:
    if _libc.renameat2(ctypes.c_int(olddirfd), ctypes.c_char_p(oldname),
                       ctypes.c_int(newdirfd), ctypes.c_char_p(newname),
                       ctypes.c_uint(flags)) != 0:
        _raise_errno()


def _timespec(ns: int | None) -> _Timespec:
    if ns is None:
        return _Timespec(0, UTIME_OMIT)
    return _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)


def utimens(path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
    """Set either time or both; a time given as None is left as it is."""
    times = (_Timespec * 2)(_timespec(atime_ns), _timespec(mtime_ns))
    if _libc.utimensat(ctypes.c_int(_AT_FDCWD), os.fsencode(path), times, ctypes.c_int(0)) != 0:
        _raise_errno()
