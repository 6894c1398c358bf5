"""Guest RAM for a front-end: a memfd mapped here and handed to the back-end.

Guest-physical addresses run from 0 to `size`. The first bytes hold the virtqueues; the
rest is a heap from which request and reply buffers are carved (first fit, coalescing).
"""

from __future__ import annotations

import bisect
import fcntl
import os
import threading

from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.transport import mapping

_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
_GRAIN = 64  # cache-line granularity keeps neighbouring buffers off each other's lines


class GuestMemory:
    """`size` bytes of shareable memory: `fd` for the back-end, `base` for this process."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"guest memory size {size} is not a positive multiple of a page")
        self.size = size
        self.fd = os.memfd_create("pagefs-guest-ram", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, size)
            # the back-end maps this; a fixed size means no access of its can ever fault
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, _SEALS)
            self.base = mapping.map_shared(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise
        # every request and reply is copied through this view: one copy, no address casts
        self._view = mapping.view(self.base, size)

    def read(self, gpa: int, length: int) -> bytes:
        self._check(gpa, length)
        return self._view[gpa : gpa + length].tobytes()

    def write(self, gpa: int, data: bytes) -> None:
        self._check(gpa, len(data))
        self._view[gpa : gpa + len(data)] = data

    def _check(self, gpa: int, length: int) -> None:
        if gpa < 0 or length < 0 or gpa + length > self.size:
            raise ValueError(f"guest range {gpa:#x}+{length} outside guest memory")

    def close(self) -> None:
        if self.fd >= 0:
            self._view.release()
            mapping.unmap(self.base, self.size)
            os.close(self.fd)
            self.fd = -1


class BufferHeap:
    """A thread-safe first-fit allocator over guest-physical [start, end)."""

    def __init__(self, start: int, end: int) -> None:
        start = -(-start // _GRAIN) * _GRAIN
        self._starts: list[int] = [start]  # free extents, sorted by start
        self._lens: dict[int, int] = {start: end - start}
        self._used: dict[int, int] = {}
        self._lock = threading.Lock()

    def alloc(self, length: int) -> int | None:
        """A guest address of `length` free bytes, or None when nothing fits now."""
        length = max(_GRAIN, -(-length // _GRAIN) * _GRAIN)
        with self._lock:
            for k, start in enumerate(self._starts):
                free = self._lens[start]
                if free < length:
                    continue
                del self._lens[start]
                if free == length:
                    del self._starts[k]
                else:
                    self._starts[k] = start + length
                    self._lens[start + length] = free - length
                self._used[start] = length
                return start
        return None

    def free(self, addr: int) -> None:
        with self._lock:
            length = self._used.pop(addr)
            k = bisect.bisect_left(self._starts, addr)
            # merge with the following extent, then with the preceding one
            if k < len(self._starts) and self._starts[k] == addr + length:
                length += self._lens.pop(self._starts.pop(k))
            if k > 0 and self._starts[k - 1] + self._lens[self._starts[k - 1]] == addr:
                self._lens[self._starts[k - 1]] += length
            else:
                self._starts.insert(k, addr)
                self._lens[addr] = length

    @property
    def in_use(self) -> int:
        with self._lock:
            return sum(self._used.values())
