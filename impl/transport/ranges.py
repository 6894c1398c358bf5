"""An interval map, and the DAX window's book built on it.

`RangeMap`: disjoint ranges [start, end) of an address space, each with a value.

Setting a range replaces whatever it overlaps and splits what it covers only in part, as
a new mmap(MAP_FIXED) over part of an older one does; both pieces of a split keep the old
value. Removing needs the range wholly set. One entry per range set, whatever its length:
the record of a window grows with the number of mappings, not with their size.

`WindowBook`: which file range each window range maps, the one type both sides of the
wire keep their record of a window in (the host per guest, the guest's front-end once).
"""

from __future__ import annotations

import bisect
import errno
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


class RangeMap(Generic[V]):
    """Disjoint [start, end) ranges, sorted by start, each with a value. Not thread-safe."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._values: list[V] = []

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[tuple[int, int, V]]:
        """(start, end, value) of every range, in address order (a snapshot)."""
        return iter(list(zip(self._starts, self._ends, self._values, strict=True)))

    def total(self) -> int:
        """How many addresses are set."""
        return sum(self._ends) - sum(self._starts)

    def _overlapping(self, start: int, end: int) -> range:
        """Indexes of the ranges that share an address with [start, end)."""
        first = bisect.bisect_right(self._starts, start)
        if first > 0 and self._ends[first - 1] > start:
            first -= 1
        return range(first, bisect.bisect_left(self._starts, end))

    def _carve(self, start: int, end: int) -> int:
        """Unsets [start, end), keeping the parts of ranges outside it; returns the index
        where a range starting at `start` now belongs."""
        span = self._overlapping(start, end)
        kept = []
        for i in span:
            if self._starts[i] < start:
                kept.append((self._starts[i], start, self._values[i]))
            if self._ends[i] > end:
                kept.append((end, self._ends[i], self._values[i]))
        self._starts[span.start : span.stop] = [s for s, _, _ in kept]
        self._ends[span.start : span.stop] = [e for _, e, _ in kept]
        self._values[span.start : span.stop] = [v for _, _, v in kept]
        return span.start + (1 if kept and kept[0][0] < start else 0)

    def set(self, start: int, end: int, value: V) -> None:
        """Sets [start, end) to `value`, replacing or splitting what it overlaps."""
        if start >= end:
            raise ValueError(f"empty range [{start}, {end})")
        i = self._carve(start, end)
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self._values.insert(i, value)

    def overlapping(self, start: int, end: int) -> list[tuple[int, int, V]]:
        """(start, end, value) of every range sharing an address with [start, end), whole."""
        return [(self._starts[i], self._ends[i], self._values[i])
                for i in self._overlapping(start, end)]

    def covers(self, start: int, end: int) -> bool:
        """True when every address of [start, end) is set."""
        at = start
        for i in self._overlapping(start, end):
            if self._starts[i] > at:
                return False
            at = self._ends[i]
        return at >= end

    def remove(self, start: int, end: int) -> None:
        """Unsets [start, end); all of it must be set (OSError EINVAL otherwise)."""
        if not self.covers(start, end):
            raise OSError(errno.EINVAL, "range is not mapped")
        self._carve(start, end)

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self._values.clear()


K = TypeVar("K")


@dataclass(frozen=True)
class Mapped(Generic[K]):
    """Window bytes [moffset, moffset + length) show file `owner` from `foffset`."""

    moffset: int
    length: int
    owner: K  # which file: the host's (st_dev, st_ino) of it on either side
    foffset: int
    writable: bool

    @property
    def end(self) -> int:
        return self.moffset + self.length


class WindowBook(Generic[K]):
    """What each byte of a DAX window maps: the one record type of a window, kept once
    by the host (per guest: what it granted) and once by the front-end (what is mapped in
    its memory). FUSE's and mmap's rule for overlaps holds: a new mapping replaces what
    it overlaps and splits what it covers in part. Not thread-safe."""

    def __init__(self) -> None:
        # value: (owner, foffset - moffset, writable); the file offset less the window
        # offset stays the same for both pieces when a mapping is split
        self._ranges: RangeMap[tuple[K, int, bool]] = RangeMap()

    def __len__(self) -> int:
        return len(self._ranges)

    def __iter__(self) -> Iterator[Mapped[K]]:
        """Every mapping, in window order (a snapshot)."""
        return iter(self._whole(self._ranges))

    @staticmethod
    def _whole(ranges: Iterable[tuple[int, int, tuple[K, int, bool]]]) -> list[Mapped[K]]:
        return [Mapped(start, end - start, owner, start + shift, writable)
                for start, end, (owner, shift, writable) in ranges]

    def total(self) -> int:
        """How many window bytes are mapped."""
        return self._ranges.total()

    def add(self, mapping: Mapped[K]) -> list[Mapped[K]]:
        """Map a range, replacing or splitting what it overlaps; returns the mappings it
        touched, whole, so that `undo` can take the add back."""
        touched = self._whole(self._ranges.overlapping(mapping.moffset, mapping.end))
        value = (mapping.owner, mapping.foffset - mapping.moffset, mapping.writable)
        self._ranges.set(mapping.moffset, mapping.end, value)
        return touched

    def undo(self, mapping: Mapped[K], touched: list[Mapped[K]]) -> None:
        """Take back an `add` of `mapping` that returned `touched`: the book is as before."""
        self._ranges.remove(mapping.moffset, mapping.end)
        for old in touched:
            self._ranges.set(old.moffset, old.end, (old.owner, old.foffset - old.moffset,
                                                    old.writable))

    def covers(self, start: int, end: int) -> bool:
        """True when every byte of [start, end) is mapped."""
        return self._ranges.covers(start, end)

    def remove(self, start: int, end: int) -> None:
        """Unmap [start, end); all of it must be mapped (OSError EINVAL otherwise)."""
        self._ranges.remove(start, end)

    def clear(self) -> None:
        self._ranges.clear()
