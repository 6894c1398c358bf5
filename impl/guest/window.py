"""The DAX window manager, in the manner of Linux fs/fuse/dax.c.

The window is cut into fixed ranges (2 MiB by default). A range is either free or
busy: mapped, by SETUPMAPPING, to one range-aligned stretch of one inode, read-only
or writable. Each inode keeps an interval map from its file ranges to window
ranges, so every file range is mapped at most once per guest and all handles of the
inode share it (a mapping outlives the handle it was made through: LIFETIME).

- A write access to a read-only range upgrades it by sending SETUPMAPPING again,
  for the same window range, with FLAG_WRITE (the daemon replaces the mapping).
- When free ranges run low, the least recently used busy ranges that nobody pins
  are reclaimed by one batched REMOVEMAPPING. A range is pinned while a user
  mapping covers it or a copy is in progress through it, and is never reclaimed
  then: with every range pinned, an acquire fails with ENOMEM.
- Forgetting an inode removes its unpinned ranges at once, in one batch. Truncation
  needs no removal: the ranges map the host's file, so pages beyond the new end
  fault on access (EOF-FAULT) and come back if the file grows again.

The manager only decides and sends requests; the front-end carries them out (maps
the donated fd into the window). Callers serialise nothing: one lock guards the
window's state, held across the requests it sends so that a range is never handed
out twice.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from pagefs.impl.protocol.constants import FUSE_REMOVEMAPPING_MAX_ENTRY

DEFAULT_RANGE_SIZE = 2 * 1024 * 1024
# fs/fuse/dax.c: reclaim when fewer than 20% of ranges are free, 10 ranges at a time.
RECLAIM_FREE_PERCENT = 20
RECLAIM_CHUNK = 10


class MappingRequests(Protocol):
    """The two requests the manager sends (the FUSE client, on the real wire)."""

    def setupmapping(
        self, nodeid: int, fh: int, foffset: int, length: int, writable: bool, moffset: int
    ) -> None: ...

    def removemapping(self, ranges: list[tuple[int, int]]) -> None: ...


@dataclass(eq=False)
class DaxRange:
    """One window range. `nodeid` is None while the range is free."""

    moffset: int
    nodeid: int | None = None
    foffset: int = 0
    writable: bool = False
    pins: int = 0


@dataclass
class _Inode:
    # The interval map: file range index -> window range. Ranges are aligned and of
    # one size, so an index keyed map is an exact interval map.
    ranges: dict[int, DaxRange] = field(default_factory=dict)


class DaxWindow:
    """Hands out pinned window ranges for (inode, file offset), mapping on demand."""

    def __init__(
        self,
        base: int,
        size: int,
        requests: MappingRequests,
        *,
        range_size: int = DEFAULT_RANGE_SIZE,
        reclaim_chunk: int = RECLAIM_CHUNK,
    ) -> None:
        if range_size <= 0 or range_size & (range_size - 1) or range_size % os.sysconf(
            "SC_PAGE_SIZE"
        ):
            raise ValueError("range size must be a power of two and a multiple of the page")
        if size < range_size:
            raise ValueError("window smaller than one range")
        self.base = base
        self.range_size = range_size
        self.requests = requests
        self.reclaim_chunk = reclaim_chunk
        self.ranges = [DaxRange(i * range_size) for i in range(size // range_size)]
        self._free: list[DaxRange] = list(reversed(self.ranges))
        self._busy: OrderedDict[DaxRange, None] = OrderedDict()  # least recently used first
        self._inodes: dict[int, _Inode] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def size(self) -> int:
        return len(self.ranges) * self.range_size

    def address(self, rng: DaxRange, foffset: int) -> int:
        """The address of file offset `foffset`, which must lie in `rng`."""
        delta = foffset - rng.foffset
        assert 0 <= delta < self.range_size
        return self.base + rng.moffset + delta

    def free_count(self) -> int:
        with self._lock:
            return len(self._free)

    def mapped(self, nodeid: int) -> dict[int, DaxRange]:
        """A snapshot of an inode's interval map (file offset -> range)."""
        with self._lock:
            inode = self._inodes.get(nodeid)
            if inode is None:
                return {}
            return {i * self.range_size: r for i, r in inode.ranges.items()}

    def acquire(self, nodeid: int, fh: int, foffset: int, writable: bool) -> DaxRange:
        """Pin the range that maps `foffset` of `nodeid`, mapping or upgrading it
        through handle `fh` as needed. Raises OSError (ENOMEM: every range pinned;
        or the daemon's errno, e.g. EACCES/EBADF/EROFS for a writable mapping)."""
        index = foffset // self.range_size
        with self._lock:
            if self._closed:
                raise OSError(errno.ENOTCONN, "the DAX window is closed")
            inode = self._inodes.get(nodeid)
            rng = inode.ranges.get(index) if inode else None
            if rng is None:
                rng = self._take_free_range()  # may reclaim ranges of this very inode
                try:
                    self.requests.setupmapping(
                        nodeid, fh, index * self.range_size, self.range_size, writable,
                        rng.moffset,
                    )
                except BaseException:
                    self._free.append(rng)
                    raise
                rng.nodeid, rng.foffset, rng.writable = nodeid, index * self.range_size, writable
                self._inodes.setdefault(nodeid, _Inode()).ranges[index] = rng
            elif writable and not rng.writable:
                # Upgrade: the same window range, mapped again with FLAG_WRITE.
                self.requests.setupmapping(
                    nodeid, fh, rng.foffset, self.range_size, True, rng.moffset
                )
                rng.writable = True
            rng.pins += 1
            self._busy[rng] = None
            self._busy.move_to_end(rng)
            return rng

    def release(self, rng: DaxRange) -> None:
        """Drop one pin taken by acquire()."""
        with self._lock:
            if self._closed:
                return
            assert rng.pins > 0, "release without acquire"
            rng.pins -= 1

    def forget(self, nodeid: int) -> None:
        """Remove the inode's unpinned ranges in one batch (inode eviction). Pinned
        ranges stay until their user lets go; reclaim takes them later."""
        with self._lock:
            inode = self._inodes.get(nodeid)
            if inode is not None:
                self._remove([r for r in inode.ranges.values() if r.pins == 0])

    def reclaim(self, count: int | None = None) -> int:
        """Remove up to `count` (default: the reclaim chunk) unpinned ranges, least
        recently used first; return how many."""
        with self._lock:
            return self._reclaim(self.reclaim_chunk if count is None else count)

    def close(self) -> None:
        """Remove every mapping, pinned or not (the guest is going away)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._remove(list(self._busy))

    # -- internals, called with the lock held --------------------------------------

    def _take_free_range(self) -> DaxRange:
        if len(self._free) * 100 < len(self.ranges) * RECLAIM_FREE_PERCENT:
            # Inline reclaim; dax.c does it in a worker, we have none to wake.
            self._reclaim(self.reclaim_chunk)
        if not self._free:
            raise OSError(errno.ENOMEM, "every DAX window range is pinned")
        return self._free.pop()

    def _reclaim(self, count: int) -> int:
        victims = [r for r in self._busy if r.pins == 0][:count]
        self._remove(victims)
        return len(victims)

    def _remove(self, victims: list[DaxRange]) -> None:
        if not victims:
            return
        # The ranges leave our books even if the request fails: the front-end has
        # unmapped them or the daemon has gone; either way they are not usable.
        ranges = [(r.moffset, self.range_size) for r in victims]
        try:
            # One REMOVEMAPPING holds at most FUSE_REMOVEMAPPING_MAX_ENTRY ranges: a guest
            # with more busy ranges (at disconnect) sends several.
            for at in range(0, len(ranges), FUSE_REMOVEMAPPING_MAX_ENTRY):
                self.requests.removemapping(ranges[at : at + FUSE_REMOVEMAPPING_MAX_ENTRY])
        finally:
            for r in victims:
                nodeid = r.nodeid
                assert nodeid is not None, "a busy range maps an inode"
                inode = self._inodes[nodeid]
                del inode.ranges[r.foffset // self.range_size]
                if not inode.ranges:
                    del self._inodes[nodeid]
                del self._busy[r]
                r.nodeid, r.foffset, r.writable, r.pins = None, 0, False, 0
                self._free.append(r)
