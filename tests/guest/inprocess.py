"""The mapping half of a front-end and back-end, in one process and without the wire.

For window-manager tests: SETUPMAPPING goes to the real host filesystem session
(its access checks, its donated descriptor) and the descriptor is mapped into a real
PROT_NONE window reservation at the requested offset, as the front-end does on
VHOST_USER_BACKEND_SHMEM_MAP; REMOVEMAPPING puts the reservation back. Requests are
recorded so tests can see what the manager sent.
"""

from __future__ import annotations

import os

from pagefs.impl.guest import safemem
from pagefs.impl.host.passthrough import GuestSession
from pagefs.impl.transport import mapping


class InProcessWindow:
    """A real window reservation whose mappings are granted by a host session."""

    def __init__(self, session: GuestSession, size: int) -> None:
        self.session = session
        self.size = size
        self.base = mapping.reserve(size)
        safemem.register_window(self.base, size)
        self.sent: list[tuple] = []

    def setupmapping(self, nodeid: int, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> None:
        self.sent.append(("setup", foffset, moffset, writable))
        grant = self.session.setupmapping(fh, foffset, length, writable, moffset)
        try:
            mapping.map_fixed(self.base + moffset, length, grant.fd, foffset,
                              writable=grant.writable)
        finally:
            os.close(grant.fd)

    def removemapping(self, ranges: list[tuple[int, int]]) -> None:
        self.sent.append(("remove", sorted(m for m, _ in ranges)))
        for moffset, length in ranges:
            self.session.removemapping(moffset, length)
            mapping.reserve_fixed(self.base + moffset, length)

    def close(self) -> None:
        safemem.unregister_window(self.base)
        mapping.unmap(self.base, self.size)
