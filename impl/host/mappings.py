"""The host's record of one guest's DAX window: which window ranges map which file ranges.

The guest owns the window memory; the host keeps this record so that REMOVEMAPPING of
a range that was never mapped is refused (EINVAL) and so that a guest's disconnect can
account for everything it held (RECLAIM). FUSE's rule for overlaps applies: a new
mapping replaces whatever it overlaps, splitting partially covered old mappings.
"""

from __future__ import annotations

import bisect
import errno
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowMapping:
    """Window bytes [moffset, moffset + length) show file `inode` from `foffset`."""

    moffset: int
    length: int
    inode: tuple[int, int]  # host identity (st_dev, st_ino)
    foffset: int
    writable: bool

    @property
    def end(self) -> int:
        return self.moffset + self.length

    def clipped(self, start: int, end: int) -> WindowMapping:
        """The part of this mapping inside window bytes [start, end)."""
        lo, hi = max(start, self.moffset), min(end, self.end)
        return WindowMapping(lo, hi - lo, self.inode, self.foffset + lo - self.moffset,
                             self.writable)


class WindowMap:
    """Non-overlapping mappings, sorted by window offset."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._mappings: list[WindowMapping] = []

    def __len__(self) -> int:
        return len(self._mappings)

    def __iter__(self):
        return iter(list(self._mappings))

    def _overlapping(self, start: int, end: int) -> range:
        first = bisect.bisect_right(self._starts, start)
        if first > 0 and self._mappings[first - 1].end > start:
            first -= 1
        last = bisect.bisect_left(self._starts, end)
        return range(first, last)

    def _carve(self, start: int, end: int) -> None:
        span = self._overlapping(start, end)
        kept: list[WindowMapping] = []
        for i in span:
            old = self._mappings[i]
            if old.moffset < start:
                kept.append(old.clipped(old.moffset, start))
            if old.end > end:
                kept.append(old.clipped(end, old.end))
        self._mappings[span.start:span.stop] = kept
        self._starts[span.start:span.stop] = [m.moffset for m in kept]

    def add(self, mapping: WindowMapping) -> None:
        """Map a range, replacing or splitting what it overlaps."""
        self._carve(mapping.moffset, mapping.end)
        i = bisect.bisect_left(self._starts, mapping.moffset)
        self._starts.insert(i, mapping.moffset)
        self._mappings.insert(i, mapping)

    def covers(self, start: int, end: int) -> bool:
        """True when every byte of [start, end) is mapped."""
        at = start
        for i in self._overlapping(start, end):
            mapping = self._mappings[i]
            if mapping.moffset > at:
                return False
            at = mapping.end
        return at >= end

    def remove(self, start: int, end: int) -> None:
        """Unmap [start, end); all of it must be mapped (EINVAL otherwise)."""
        if not self.covers(start, end):
            raise OSError(errno.EINVAL, "range is not mapped")
        self._carve(start, end)

    def clear(self) -> None:
        self._starts.clear()
        self._mappings.clear()
