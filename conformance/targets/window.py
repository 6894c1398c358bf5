"""A DAX window for syscall-view guests: file fds mapped MAP_FIXED into a reserved range.

The same shape as the pagefs guest's window (a PROT_NONE reservation, file ranges
mapped shared at window offsets, unmapped ranges made PROT_NONE again), so a local
or mounted guest view is judged through the same LOAD/STORE operations. Accesses go
through the guest layer's fault-contained copies: a SIGBUS beyond end of file or a
SIGSEGV on an unmapped range ends that access with EFAULT.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

from pagefs.impl.guest import safemem

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_FIXED = 0x10
_PROT_NONE = 0
_MAP_NORESERVE = 0x4000


def _mmap(addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    got = _libc.mmap(addr, length, prot, flags, fd, offset)
    if got == _MAP_FAILED or got is None:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return got


class Window:
    """`size` bytes of guest address space; ranges are file mappings or PROT_NONE."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.base = _mmap(0, size, _PROT_NONE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
        safemem.register_window(self.base, size)

    def _check(self, moffset: int, length: int) -> None:
        if moffset < 0 or length <= 0 or moffset + length > self.size:
            raise OSError(errno.EINVAL, "range outside the window")

    def map(self, fd: int, foffset: int, length: int, moffset: int, writable: bool) -> None:
        """Map `length` bytes of `fd` from `foffset`, shared, at window offset `moffset`."""
        self._check(moffset, length)
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        _mmap(self.base + moffset, length, prot, mmap.MAP_SHARED | _MAP_FIXED, fd, foffset)

    def unmap(self, moffset: int, length: int) -> None:
        """Put the reservation back over the range (later accesses fault)."""
        self._check(moffset, length)
        _mmap(self.base + moffset, length, _PROT_NONE,
              mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE | _MAP_FIXED, -1, 0)

    def load(self, moffset: int, size: int) -> bytes:
        self._check(moffset, size)
        data = safemem.read(self.base + moffset, size)
        if len(data) < size:
            raise OSError(errno.EFAULT, f"load faulted at window offset {moffset + len(data)}")
        return data

    def store(self, moffset: int, data: bytes) -> None:
        self._check(moffset, len(data))
        done = safemem.write_from(self.base + moffset, data)
        if done < len(data):
            raise OSError(errno.EFAULT, f"store faulted at window offset {moffset + done}")

    def close(self) -> None:
        if self.base:
            safemem.unregister_window(self.base)
            _libc.munmap(self.base, self.size)
            self.base = 0
