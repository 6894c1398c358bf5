"""A DAX window for syscall-view guests: file fds mapped MAP_FIXED into a reserved range.

The same shape as the pagefs guest's window (a PROT_NONE reservation, file ranges
mapped shared at window offsets, unmapped ranges made inaccessible again), built
from the same transport helpers, so a local or mounted guest view is judged through
the same LOAD/STORE operations. Accesses go through the guest layer's
fault-contained copies: SIGBUS beyond end of file, or SIGSEGV on an unmapped range,
ends that one access with EFAULT.
"""

from __future__ import annotations

import errno

from pagefs.impl.guest import safemem
from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.transport import mapping


class Window:
    """`size` bytes of guest address space; ranges are file mappings or inaccessible.

    The checks are the harness's; the five primitives at the end are this process's
    memory, and a subclass may put the window elsewhere (a VM's agent does)."""

    def __init__(self, size: int, range_size: int = 2 << 20) -> None:
        self.size, self.range_size = size, range_size
        self._reserve()

    def _check(self, moffset: int, length: int, error: int = errno.EFAULT) -> None:
        if moffset < 0 or length <= 0 or moffset + length > self.size:
            raise OSError(error, "range outside the window")

    def _check_ranges(self, moffset: int, length: int) -> None:
        """The window is managed in whole ranges, as the pagefs guest's is."""
        self._check(moffset, length, errno.EINVAL)
        if moffset % self.range_size or length % self.range_size:
            raise OSError(errno.EINVAL, "not whole window ranges")

    def map(self, fd: int, foffset: int, length: int, moffset: int, writable: bool) -> None:
        """Map `length` bytes of `fd` from `foffset`, shared, at window offset `moffset`."""
        self._check_ranges(moffset, length)
        if foffset < 0 or foffset % PAGE_SIZE:
            raise OSError(errno.EINVAL, "file offset not page-aligned")
        self._map_at(fd, foffset, length, moffset, writable)

    def unmap(self, moffset: int, length: int) -> None:
        self._check_ranges(moffset, length)
        self._unmap_at(moffset, length)

    def load(self, moffset: int, size: int) -> bytes:
        self._check(moffset, size)
        data = self._read(moffset, size)
        if len(data) < size:
            raise OSError(errno.EFAULT, f"load faulted at window offset {moffset + len(data)}")
        return data

    def store(self, moffset: int, data: bytes) -> None:
        self._check(moffset, len(data))
        done = self._write(moffset, data)
        if done < len(data):
            raise OSError(errno.EFAULT, f"store faulted at window offset {moffset + done}")

    # Primitives: this process's address space.
    def _reserve(self) -> None:
        self.base = mapping.reserve(self.size)
        safemem.register_window(self.base, self.size)

    def _map_at(self, fd: int, foffset: int, length: int, moffset: int,
                writable: bool) -> None:
        mapping.map_fixed(self.base + moffset, length, fd, foffset, writable=writable)

    def _unmap_at(self, moffset: int, length: int) -> None:
        mapping.reserve_fixed(self.base + moffset, length)

    def _read(self, moffset: int, size: int) -> bytes:
        """Up to `size` bytes: fewer when the access faulted there."""
        return safemem.read(self.base + moffset, size)

    def _write(self, moffset: int, data: bytes) -> int:
        """How many bytes were stored before a fault, if any."""
        return safemem.write_from(self.base + moffset, data)

    def close(self) -> None:
        if self.base:
            safemem.unregister_window(self.base)
            mapping.unmap(self.base, self.size)
            self.base = 0
