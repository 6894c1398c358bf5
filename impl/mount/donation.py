"""Host fds for open handles, taken from the back-end's DAX donations.

A back-end that serves SETUPMAPPING sends the front-end the host file's descriptor
(VHOST_USER_BACKEND_SHMEM_MAP) to map into the DAX window. Asking for a mapping of an
open handle and removing it again therefore hands us the host file itself: the
front-end's `on_shmem_map` observer keeps a duplicate of the descriptor. The back-end
still decides the access: a read mapping comes with a read-only descriptor.
"""

from __future__ import annotations

import errno
import os
import queue
import threading

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.machine import PAGE_SIZE


class Donations:
    """Takes host fds through the DAX window of `client`, one window slot per request."""

    def __init__(self, client: FuseClient) -> None:
        alignment, window = client.map_alignment, client.window
        if alignment is None or window is None:
            raise OSError(errno.EOPNOTSUPP, "the back-end offers no DAX window")
        self._client = client
        self._slot = max(1 << alignment, PAGE_SIZE)
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for offset in range(0, window.size - self._slot + 1, self._slot):
            self._free.put(offset)
        self._lock = threading.Lock()
        self._awaited: dict[int, int | None] = {}  # slot -> the fd donated there
        client.frontend.on_shmem_map = self._donated

    def _donated(self, fd: int, fd_offset: int, shm_offset: int, length: int,
                 writable: bool) -> None:
        with self._lock:
            if shm_offset in self._awaited and self._awaited[shm_offset] is None:
                self._awaited[shm_offset] = os.dup(fd)

    def host_fd(self, nodeid: int, fh: int, writable: bool) -> int:
        """The host file behind handle `fh` (the caller closes it); OSError when the
        back-end refuses the mapping or donates nothing."""
        slot = self._free.get()
        with self._lock:
            self._awaited[slot] = None
        failed = True
        try:
            self._client.setupmapping(nodeid, fh, 0, self._slot, writable, slot)
            self._client.removemapping([(slot, self._slot)])
            failed = False
        finally:
            with self._lock:
                fd = self._awaited.pop(slot)
            self._free.put(slot)
            if failed and fd is not None:
                os.close(fd)
        if fd is None:
            raise OSError(errno.EOPNOTSUPP, "SETUPMAPPING succeeded but no fd was donated")
        return fd
