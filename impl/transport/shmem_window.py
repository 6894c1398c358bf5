"""The front-end's DAX window: VIRTIO shared memory region 0 of a virtio-fs device.

An inaccessible (PROT_NONE) reservation; VHOST_USER_BACKEND_SHMEM_MAP maps a donated fd
over part of it with MAP_FIXED|MAP_SHARED, and _UNMAP puts the reservation back, so a
stray access to an unmapped part always faults instead of reading someone else's page.
"""

from __future__ import annotations

import errno
import os
import threading

from pagefs.impl.machine import MAX_FILE_OFFSET, PAGE_SIZE, whole_pages
from pagefs.impl.transport import mapping
from pagefs.impl.transport.ranges import Mapped, WindowBook


class ShmemWindow:
    """`size` bytes at address `base` in this process. What is mapped where is its book,
    the same type the host keeps its record of this window in."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"window size {size} is not a positive multiple of a page")
        self.size = size
        self.base = mapping.reserve(size)
        self._lock = threading.Lock()
        # owner: the donated file's (st_dev, st_ino), as the host names it
        self._book = WindowBook()

    def map(self, fd: int, fd_offset: int, shm_offset: int, length: int, writable: bool) -> None:
        """Maps fd[fd_offset:+length] at shm_offset, replacing what was there."""
        self._check(shm_offset, length)
        if fd_offset % PAGE_SIZE:
            raise OSError(errno.EINVAL, f"fd offset {fd_offset:#x} is not page aligned")
        if fd_offset + length > MAX_FILE_OFFSET:
            raise OSError(errno.EOVERFLOW, f"fd offset {fd_offset:#x} beyond any file")
        st = os.fstat(fd)
        with self._lock:
            mapping.map_fixed(self.base + shm_offset, length, fd, fd_offset, writable=writable)
            self._book.add(Mapped(shm_offset, length, (st.st_dev, st.st_ino), fd_offset,
                                 writable))

    def unmap(self, shm_offset: int, length: int) -> None:
        """Makes [shm_offset, +length) inaccessible again; every page of it must be mapped."""
        self._check(shm_offset, length)
        with self._lock:
            if not self._book.covers(shm_offset, shm_offset + length):
                raise OSError(errno.EINVAL, "unmap of a range that is not wholly mapped")
            mapping.reserve_fixed(self.base + shm_offset, length)
            self._book.remove(shm_offset, shm_offset + length)

    def unmap_each(self, ranges: list[tuple[int, int]]) -> None:
        """`unmap` of every (shm_offset, length) range, whatever the others' answers, as
        the back-end's pipelined SHMEM_UNMAPs are answered; raises the first refusal."""
        refusals = []
        for shm_offset, length in ranges:
            try:
                self.unmap(shm_offset, length)
            except OSError as e:
                refusals.append(e)
        if refusals:
            raise refusals[0]

    def mappings(self) -> list[Mapped]:
        """What is mapped, in window order (a snapshot)."""
        with self._lock:
            return list(self._book)

    def mapped_bytes(self) -> int:
        with self._lock:
            return self._book.total()

    def _check(self, shm_offset: int, length: int) -> None:
        if length <= 0 or shm_offset < 0 or shm_offset + length > self.size:
            raise OSError(errno.EINVAL, f"range {shm_offset:#x}+{length:#x} outside the window")
        if not whole_pages(shm_offset, length):
            raise OSError(errno.EINVAL, f"range {shm_offset:#x}+{length:#x} is not page aligned")

    def close(self) -> None:
        with self._lock:
            if self.size:
                mapping.unmap(self.base, self.size)
                self._book.clear()
                self.size = 0
