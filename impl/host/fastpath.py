"""The host's C fast path (fastpath.c) for one guest: GETATTR, LOOKUP, FORGET,
BATCH_FORGET, OPEN, RELEASE, FLUSH, READ, WRITE, SETUPMAPPING and REMOVEMAPPING answered
from the transport's queue loop against the session's tables (the mappings on the
back-end's channel to the front-end's window), without the GIL. The Python dispatcher stays the
reference: the fast path answers only what it can answer exactly as the dispatcher
would and hands every other request (other opcodes, unusual flags, malformed bytes, any
failure) to it untouched. What the dispatcher decides per connection (INIT done, the
cache policy, whose credentials a request runs with) is copied into the C rules here.
"""

from __future__ import annotations

from pagefs.impl.transport.backend import FastServe

from ._session import ffi, lib
from .cache_policy import CachePolicy
from .credentials import Credentials
from .tables import SessionTables

# The largest reply the differential test's buffer offers (a READ of max_transfer).
_REPLY_ROOM = (1 << 20) + 4096


class FastPath:
    """The C rules and serve function for one session's tables."""

    def __init__(self, tables: SessionTables, *, cache: CachePolicy,
                 credentials: Credentials, backend_channel: int | None = None,
                 map_sources: tuple[int, bool] = (-1, False)) -> None:
        """`backend_channel`: the back-end's channel to the front-end's window
        (VhostUserBackend.backend_channel), which SETUPMAPPING and REMOVEMAPPING are
        served on (None: they are the dispatcher's); `map_sources`: where donated
        descriptors come from (GuestSession.map_sources)."""
        self._tables = tables
        self._rules = lib.pf_rules(tables.ptr)
        with tables.locked():
            rules = self._rules
            rules.switching = int(credentials.switching)
            rules.squash_uid = -1 if credentials.squash_uid is None else credentials.squash_uid
            rules.squash_gid = -1 if credentials.squash_gid is None else credentials.squash_gid
            rules.attr_timeout = cache.attr_timeout
            rules.entry_timeout = cache.entry_timeout
            rules.open_flags = cache.open_flags
            rules.backend = ffi.cast("struct vu_backend_chan *", backend_channel or 0)
            rules.read_only_root, writable_map_fds = map_sources
            rules.writable_map_fds = int(writable_map_fds)
            rules.enabled = 1
        self._reply = ffi.new("uint8_t[]", _REPLY_ROOM)
        self._reply_len = ffi.new("size_t *")

    def gate(self, initialized: bool) -> None:
        """The dispatcher's INIT state: before INIT (and after DESTROY) nothing is served
        here (the dispatcher answers EIO)."""
        with self._tables.locked():
            self._rules.initialized = int(initialized)

    @property
    def served(self) -> int:
        """Requests answered in C so far."""
        return int(self._rules.served)

    @property
    def serve(self) -> FastServe:
        """The serve function and its context for the back-end's queue loop."""
        fn = ffi.cast("uintptr_t", ffi.addressof(lib, "pf_serve_chain"))
        return int(fn), int(ffi.cast("uintptr_t", self._tables.ptr))

    def serve_buffer(self, request: bytes) -> bytes | None:
        """The fast path's reply to one request's bytes, or None when it is the
        dispatcher's (as the queue loop would hand it on)."""
        if not lib.pf_serve_buffer(self._tables.ptr, request, len(request), self._reply,
                                   _REPLY_ROOM, self._reply_len):
            return None
        return bytes(ffi.buffer(self._reply, self._reply_len[0]))
