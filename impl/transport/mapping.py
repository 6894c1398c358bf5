"""Address-space helpers: shared mappings of fds, PROT_NONE reservations, MAP_FIXED.

Python's mmap module cannot place a mapping at a chosen address, which a DAX window
needs; these thin wrappers call mmap(2) through the cffi module and raise OSError.
"""

from __future__ import annotations

import os

from pagefs.impl.transport._vring import ffi, lib

_MAP_FAILED = ffi.cast("void *", -1)


def _mmap(addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    p = lib.mmap(ffi.cast("void *", addr), length, prot, flags, fd, offset)
    if p == _MAP_FAILED:
        err = ffi.errno
        raise OSError(err, os.strerror(err))
    return int(ffi.cast("uintptr_t", p))


def map_shared(fd: int, length: int, offset: int = 0, *, writable: bool = True) -> int:
    """Maps `length` bytes of fd at `offset` somewhere; returns the address."""
    prot = lib.PROT_READ | (lib.PROT_WRITE if writable else 0)
    return _mmap(0, length, prot, lib.MAP_SHARED, fd, offset)


def reserve(length: int) -> int:
    """An inaccessible, unbacked address range (a DAX window before anything is mapped)."""
    flags = lib.MAP_PRIVATE | lib.MAP_ANONYMOUS | lib.MAP_NORESERVE
    return _mmap(0, length, lib.PROT_NONE, flags, -1, 0)


def map_fixed(addr: int, length: int, fd: int, offset: int, *, writable: bool) -> None:
    """Replaces [addr, addr+length) with a shared mapping of fd (atomically, MAP_FIXED)."""
    prot = lib.PROT_READ | (lib.PROT_WRITE if writable else 0)
    _mmap(addr, length, prot, lib.MAP_SHARED | lib.MAP_FIXED, fd, offset)


def reserve_fixed(addr: int, length: int) -> None:
    """Puts the inaccessible reservation back over [addr, addr+length)."""
    flags = lib.MAP_PRIVATE | lib.MAP_ANONYMOUS | lib.MAP_NORESERVE | lib.MAP_FIXED
    _mmap(addr, length, lib.PROT_NONE, flags, -1, 0)


def unmap(addr: int, length: int) -> None:
    if lib.munmap(ffi.cast("void *", addr), length) != 0:
        err = ffi.errno
        raise OSError(err, os.strerror(err))


def view(addr: int, length: int) -> memoryview:
    """A writable view of [addr, addr+length); valid until that range is unmapped."""
    return memoryview(ffi.buffer(ffi.cast("char *", addr), length))


def peek(addr: int, length: int) -> bytes:
    return ffi.buffer(ffi.cast("char *", addr), length)[:]


def poke(addr: int, data: bytes) -> None:
    ffi.memmove(ffi.cast("char *", addr), data, len(data))
