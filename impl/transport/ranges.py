"""The DAX window's book: which file range each window range maps, the one record type
both sides of the wire keep their record of a window in (the host per guest, the guest's
front-end once). The book itself is C (window_book.c), so that the host's fast path and
the front-end's backend channel change it without Python; this is Python's view of it.

Setting a range replaces whatever it overlaps and splits what it covers only in part, as
a new mmap(MAP_FIXED) over part of an older one does; both pieces of a split keep their
file offsets. Removing needs the range wholly set. One entry per range set, whatever its
length: the record of a window grows with the number of mappings, not with their size.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pagefs.impl.transport._vring import ffi, lib

_MASK = (1 << 64) - 1
Owner = tuple[int, int]  # which file: the host's (st_dev, st_ino) of it on either side


@dataclass(frozen=True)
class Mapped:
    """Window bytes [moffset, moffset + length) show file `owner` from `foffset`."""

    moffset: int
    length: int
    owner: Owner
    foffset: int
    writable: bool

    @property
    def end(self) -> int:
        return self.moffset + self.length


def _check(code: int, what: str) -> None:
    if code == -errno.ENOMEM:
        raise MemoryError(what)
    if code < 0:
        raise OSError(-code, what)


class WindowBook:
    """What each byte of a DAX window maps. Not thread-safe: its owner locks. Given
    `address`, the view of a book another C structure owns (the host session's), which
    must outlive this view; otherwise a book of its own."""

    def __init__(self, address: int | None = None) -> None:
        if address is None:
            ptr = lib.wb_new()
            if ptr == ffi.NULL:
                raise MemoryError("window book")
            self._ptr: Any = ffi.gc(ptr, lib.wb_free)
        else:
            self._ptr = ffi.cast("struct wb_book *", address)
        self._touched: Any = ffi.gc(lib.wb_new(), lib.wb_free)

    @property
    def address(self) -> int:
        return int(ffi.cast("uintptr_t", self._ptr))

    def __len__(self) -> int:
        return int(self._ptr.len)

    def __iter__(self) -> Iterator[Mapped]:
        """Every mapping, in window order (a snapshot)."""
        return iter(self._whole(self._ptr))

    @staticmethod
    def _whole(book: Any) -> list[Mapped]:
        out = []
        for i in range(book.len):
            r = book.r[i]
            out.append(Mapped(r.start, r.end - r.start, (r.dev, r.ino),
                              (r.start + r.shift) & _MASK, bool(r.writable)))
        return out

    @staticmethod
    def _range(m: Mapped) -> Any:
        return ffi.new("struct wb_range *", {
            "start": m.moffset, "end": m.end, "dev": m.owner[0], "ino": m.owner[1],
            "shift": (m.foffset - m.moffset) & _MASK, "writable": int(m.writable)})

    def total(self) -> int:
        """How many window bytes are mapped."""
        return int(lib.wb_total(self._ptr))

    def add(self, mapping: Mapped) -> list[Mapped]:
        """Map a range, replacing or splitting what it overlaps; returns the mappings it
        touched, whole, so that `undo` can take the add back."""
        if mapping.length <= 0:
            raise ValueError(f"empty range at {mapping.moffset}")
        _check(lib.wb_add(self._ptr, self._range(mapping), self._touched), "window book add")
        return self._whole(self._touched)

    def undo(self, mapping: Mapped, touched: list[Mapped]) -> None:
        """Take back an `add` of `mapping` that returned `touched`: the book is as before."""
        _check(lib.wb_remove(self._ptr, mapping.moffset, mapping.end), "undo of no mapping")
        for old in touched:
            _check(lib.wb_add(self._ptr, self._range(old), ffi.NULL), "window book undo")

    def covers(self, start: int, end: int) -> bool:
        """True when every byte of [start, end) is mapped (none past the book's 64 bits is:
        a guest's range that overflows them is no mapping, not an OverflowError)."""
        return end <= _MASK and bool(lib.wb_covers(self._ptr, start, end))

    def remove(self, start: int, end: int) -> None:
        """Unmap [start, end); all of it must be mapped (OSError EINVAL otherwise)."""
        if end > _MASK or lib.wb_remove(self._ptr, start, end) != 0:
            raise OSError(errno.EINVAL, "range is not mapped")

    def clear(self) -> None:
        lib.wb_clear(self._ptr)
