"""The front-end's DAX window: VIRTIO shared memory region 0 of a virtio-fs device.

An inaccessible (PROT_NONE) reservation; VHOST_USER_BACKEND_SHMEM_MAP maps a donated fd
over part of it with MAP_FIXED|MAP_SHARED, and _UNMAP puts the reservation back, so a
stray access to an unmapped part always faults instead of reading someone else's page.
The window and its book are C (shmem_window.c), so that the front-end's backend-channel
thread carries the back-end's requests out without Python (`serve`); this is Python's
view of it.
"""

from __future__ import annotations

import os
from typing import Any

from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.transport._vring import ffi, lib
from pagefs.impl.transport.ranges import Mapped, WindowBook
from pagefs.impl.transport.vhost_user import Message


class ShmemWindow:
    """`size` bytes at address `base` in this process. What is mapped where is its book,
    the same type the host keeps its record of this window in."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"window size {size} is not a positive multiple of a page")
        ptr = lib.shm_window_new(size)
        if ptr == ffi.NULL:
            raise OSError(ffi.errno, f"window reservation of {size} bytes")
        self._ptr: Any = ptr
        self.size = size
        self.base = int(lib.shm_window_base(ptr))
        # owner: the donated file's (st_dev, st_ino), as the host names it
        self._book = WindowBook(int(ffi.cast("uintptr_t", lib.shm_window_book(ptr))))
        self._msg = ffi.new("struct vu_msg *")

    def map(self, fd: int, fd_offset: int, shm_offset: int, length: int, writable: bool) -> None:
        """Maps fd[fd_offset:+length] at shm_offset, replacing what was there."""
        _check(lib.shm_window_map(self._ptr, fd, fd_offset, shm_offset, length,
                                  int(writable)),
               f"map of {length:#x} bytes at {shm_offset:#x} (file offset {fd_offset:#x})")

    def unmap(self, shm_offset: int, length: int) -> None:
        """Makes [shm_offset, +length) inaccessible again; every page of it must be mapped."""
        _check(lib.shm_window_unmap(self._ptr, shm_offset, length),
               f"unmap of {length:#x} bytes at {shm_offset:#x}")

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

    @property
    def ptr(self) -> Any:
        """struct shm_window *, for the request path's waiters (valid until `close`)."""
        return self._ptr

    @property
    def waiter_served(self) -> int:
        """SHMEM requests answered by a thread waiting for its reply rather than by the
        backend-channel thread (RequestPath.expecting_backend)."""
        return int(lib.shm_window_waiter_served(self._ptr))

    def observe(self, observe: bool) -> None:
        """While set, `serve` hands every SHMEM_MAP to its caller (who observes donated
        descriptors) rather than carrying it out itself."""
        lib.shm_window_observe(self._ptr, int(observe))

    def serve(self, sock: int, stop_fd: int) -> Message | None:
        """Carries out the back-end's SHMEM_MAP/_UNMAP on the backend channel `sock`, in C
        and without the GIL, until a message it leaves to the caller (returned, its fds
        the caller's), `stop_fd` or the end of the stream (None); OSError when the
        channel is unusable (a malformed message: EPROTO)."""
        r = lib.shm_window_serve(self._ptr, sock, stop_fd, self._msg)
        if r < 0:
            raise OSError(-r, os.strerror(-r))
        if r == lib.SHM_SERVE_STOP:
            return None
        m = self._msg
        return Message(m.request, m.flags, bytes(ffi.buffer(m.payload, m.size)),
                       [m.fds[k] for k in range(m.nfds)])

    def mappings(self) -> list[Mapped]:
        """What is mapped, in window order (a snapshot)."""
        if not self.size:
            return []
        lib.shm_window_lock(self._ptr)
        try:
            return list(self._book)
        finally:
            lib.shm_window_unlock(self._ptr)

    def mapped_bytes(self) -> int:
        if not self.size:
            return 0
        lib.shm_window_lock(self._ptr)
        try:
            return self._book.total()
        finally:
            lib.shm_window_unlock(self._ptr)

    def close(self) -> None:
        """Unmaps the whole window; nothing may be using it any more."""
        if self.size:
            self.size = 0
            lib.shm_window_free(self._ptr)


def _check(code: int, what: str) -> None:
    if code < 0:
        raise OSError(-code, f"{what}: {os.strerror(-code)}")
