"""The mapping half of a front-end and back-end, in one process and without the wire.

For window-manager tests: SETUPMAPPING goes to the real host filesystem session
(its access checks, its donated descriptor) and the descriptor is mapped into a real
PROT_NONE window reservation at the requested offset, as the front-end does on
VHOST_USER_BACKEND_SHMEM_MAP; REMOVEMAPPING puts the reservation back. Requests are
recorded so tests can see what the manager sent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os

from pagefs.impl.guest import safemem
from pagefs.impl.host.passthrough import GuestSession

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
MAP_FIXED = 0x10
MAP_FAILED = ctypes.c_void_p(-1).value


def _map_fixed(address: int, length: int, prot: int, flags: int, fd: int, offset: int) -> None:
    if _libc.mmap(address, length, prot, flags | MAP_FIXED, fd, offset) == MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class InProcessWindow:
    """A real window reservation whose mappings are granted by a host session."""

    def __init__(self, session: GuestSession, size: int) -> None:
        self.session = session
        self.size = size
        self._reservation = mmap.mmap(-1, size, prot=0)
        self.base = safemem.buffer_address(self._reservation)
        safemem.register_window(self.base, size)
        self.sent: list[tuple] = []

    def setupmapping(self, nodeid: int, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> None:
        self.sent.append(("setup", foffset, moffset, writable))
        grant = self.session.setupmapping(fh, foffset, length, writable, moffset)
        try:
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if grant.writable else 0)
            _map_fixed(self.base + moffset, length, prot, mmap.MAP_SHARED, grant.fd, foffset)
        finally:
            os.close(grant.fd)

    def removemapping(self, ranges: list[tuple[int, int]]) -> None:
        self.sent.append(("remove", sorted(m for m, _ in ranges)))
        for moffset, length in ranges:
            self.session.removemapping(moffset, length)
            _map_fixed(self.base + moffset, length, 0,
                       mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)

    def close(self) -> None:
        safemem.unregister_window(self.base)
        self._reservation.close()
