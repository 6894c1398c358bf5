"""A guest session's tables as Python sees them: nodeids and handles live in C
(session.c), their one home, which the passthrough layer and the C fast path
(fastpath.c) share under one recursive lock. Reads give snapshots (`Node`, `Handle`),
valid while the lock is held; every change is a call into C.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pagefs.impl.protocol import open_flags
from pagefs.impl.protocol.constants import FUSE_ROOT_ID
from pagefs.impl.transport import procfd

from ._session import ffi, lib


@dataclass(frozen=True)
class Node:
    fd: int  # O_PATH, pins the inode
    key: tuple[int, int]
    generation: int
    nlookup: int
    kind: int  # stat.S_IFMT of the pinned inode, which never changes: no fstat to learn it


@dataclass(frozen=True)
class Handle(open_flags.OpenAccess):
    fd: int
    key: tuple[int, int]
    flags: int
    is_dir: bool


class Export:
    """What every session of one export shares: the generation counter, read-only, the
    per-guest descriptor cap."""

    def __init__(self, *, read_only: bool, fds_per_guest: int | None) -> None:
        ptr = lib.pf_export_new(int(read_only), -1 if fds_per_guest is None else fds_per_guest,
                                procfd.directory())
        if ptr == ffi.NULL:
            raise MemoryError("export tables")
        self.ptr = ffi.gc(ptr, lib.pf_export_free)

    def next_generation(self) -> int:
        return int(lib.pf_next_generation(self.ptr))


class SessionTables:
    """One guest's nodeids and handles; nodeid FUSE_ROOT_ID is the root on `root_fd`
    (owned)."""

    def __init__(self, export: Export, root_fd: int) -> None:
        st = os.fstat(root_fd)
        ptr = lib.pf_session_new(export.ptr, FUSE_ROOT_ID, root_fd, st.st_dev, st.st_ino,
                                 stat.S_IFMT(st.st_mode))
        if ptr == ffi.NULL:
            raise MemoryError("session tables")
        self._export = export  # the session's generations come from it
        self.ptr: Any = ffi.gc(ptr, lib.pf_session_free)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The session's one lock (recursive; taken by the fast path too). Waiting for
        it releases the GIL, so a C request in progress never waits on Python."""
        lib.pf_lock(self.ptr)
        try:
            yield
        finally:
            lib.pf_unlock(self.ptr)

    @contextmanager
    def window_locked(self) -> Iterator[None]:
        """One mapping request at a time (the fast path's too): the window book and the
        front-end's window change together. Taken before `locked`."""
        lib.pf_window_lock(self.ptr)
        try:
            yield
        finally:
            lib.pf_window_unlock(self.ptr)

    @property
    def window_address(self) -> int:
        """The session's window book (struct wb_book *), for ranges.WindowBook's view."""
        return int(ffi.cast("uintptr_t", lib.pf_window(self.ptr)))

    def node(self, nodeid: int) -> Node | None:
        n = lib.pf_node_get(self.ptr, nodeid) if 0 < nodeid < 1 << 64 else ffi.NULL
        if n == ffi.NULL:
            return None
        return Node(n.fd, (n.dev, n.ino), n.generation, n.nlookup, n.kind)

    def nodeid_of(self, key: tuple[int, int]) -> int | None:
        return int(lib.pf_node_by_key(self.ptr, key[0], key[1])) or None

    def add_node(self, fd: int, key: tuple[int, int], kind: int) -> int:
        nodeid = int(lib.pf_node_add(self.ptr, fd, key[0], key[1], kind))
        if not nodeid:
            raise OSError(errno.ENOMEM, "no memory for a nodeid")
        return nodeid

    def looked_up(self, nodeid: int) -> None:
        """One more lookup of a known nodeid."""
        lib.pf_node_get(self.ptr, nodeid).nlookup += 1

    def forget(self, nodeid: int, nlookup: int) -> None:
        lib.pf_node_forget(self.ptr, nodeid, min(nlookup, (1 << 64) - 1))

    def handle(self, fh: int) -> Handle | None:
        h = lib.pf_handle_get(self.ptr, fh) if 0 < fh < 1 << 64 else ffi.NULL
        if h == ffi.NULL:
            return None
        return Handle(h.fd, (h.dev, h.ino), h.flags, bool(h.is_dir))

    def add_handle(self, fd: int, key: tuple[int, int], flags: int, is_dir: bool) -> int:
        fh = int(lib.pf_handle_add(self.ptr, fd, key[0], key[1], flags, int(is_dir)))
        if not fh:
            raise OSError(errno.ENOMEM, "no memory for a handle")
        return fh

    def hold(self, fh: int) -> Any:
        """Keep handle `fh` (known: checked under the lock, which must be held) open for
        I/O done without the lock: its descriptor is closed, whatever a RELEASE or a reset
        does meanwhile, only after `put` (session.c's pf_handle_hold)."""
        return lib.pf_handle_hold(self.ptr, fh)

    def put(self, held: Any) -> None:
        """The I/O on a held handle is done (takes the lock itself)."""
        lib.pf_handle_put(self.ptr, held)

    def remove_handle(self, fh: int) -> None:
        """Forget the handle and close its descriptor."""
        lib.pf_handle_remove(self.ptr, fh)

    def counts(self) -> tuple[int, int]:
        return int(lib.pf_nodes(self.ptr)), int(lib.pf_handles(self.ptr))

    def over_cap(self, fds: int) -> bool:
        return bool(lib.pf_over_cap(self.ptr, fds))

    def release_all(self, *, keep_root: bool) -> None:
        lib.pf_release_all(self.ptr, int(keep_root))
