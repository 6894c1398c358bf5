"""The host's record of one guest's DAX window: which window ranges map which file ranges.

The guest owns the window memory; the host keeps this record so that REMOVEMAPPING of
a range that was never mapped is refused (EINVAL) and so that a guest's disconnect can
account for everything it held (RECLAIM). FUSE's rule for overlaps applies: a new
mapping replaces whatever it overlaps, splitting partially covered old mappings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pagefs.impl.transport.ranges import RangeMap


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


class WindowMap:
    """Non-overlapping mappings, sorted by window offset."""

    def __init__(self) -> None:
        # value: (inode, foffset - moffset, writable); the file offset less the window
        # offset stays the same for both pieces when a mapping is split
        self._ranges: RangeMap[tuple[tuple[int, int], int, bool]] = RangeMap()

    def __len__(self) -> int:
        return len(self._ranges)

    def __iter__(self) -> Iterator[WindowMapping]:
        for start, end, (inode, shift, writable) in self._ranges:
            yield WindowMapping(start, end - start, inode, start + shift, writable)

    def add(self, mapping: WindowMapping) -> list[WindowMapping]:
        """Map a range, replacing or splitting what it overlaps; returns the mappings it
        touched, whole, so that a mapping the front-end then refuses can be undone."""
        touched = [WindowMapping(start, end - start, inode, start + shift, writable)
                   for start, end, (inode, shift, writable)
                   in self._ranges.overlapping(mapping.moffset, mapping.end)]
        value = (mapping.inode, mapping.foffset - mapping.moffset, mapping.writable)
        self._ranges.set(mapping.moffset, mapping.end, value)
        return touched

    def undo(self, mapping: WindowMapping, touched: list[WindowMapping]) -> None:
        """Take back an `add` of `mapping` that returned `touched`: the window is as before."""
        self._ranges.remove(mapping.moffset, mapping.end)
        for old in touched:
            self._ranges.set(old.moffset, old.end,
                             (old.inode, old.foffset - old.moffset, old.writable))

    def covers(self, start: int, end: int) -> bool:
        """True when every byte of [start, end) is mapped."""
        return self._ranges.covers(start, end)

    def remove(self, start: int, end: int) -> None:
        """Unmap [start, end); all of it must be mapped (EINVAL otherwise)."""
        self._ranges.remove(start, end)

    def clear(self) -> None:
        self._ranges.clear()
