"""Seeded bugs in the guest driver, for judging the suite through `pagefs-api`.

Each is the real driver with one method wrong, swapped into a connected Share's window
manager or data path (their classes replaced by a subclass that differs in that one
method); everything else is the real driver on the real daemon:

    reclaim-pinned      reclaim takes ranges a live Mapping still pins
    pread-past-eof      Handle.pread through the window reads on past the end of file
    inexact-fault-count a read that faults (the host truncated under it) keeps the whole
                        copied count, not the bytes before the new end of file
    no-upgrade          a read-only range is never mapped again writable when a writable
                        access asks for it
    probe-last-byte     READ-BOUND's probe loads the page of the access's last byte, not
                        the first page boundary at or after its end
    books-off-by-one    the window's books (what the C fast read finds ranges by) enter
                        each mapped range as holding the file range after its own
"""

from __future__ import annotations

from collections.abc import Callable

from pagefs.conformance.targets.api import ApiFactory, connect_share
from pagefs.conformance.targets.daemon import DaemonFactory
from pagefs.impl.guest import Share, safemem
from pagefs.impl.guest._safemem import lib
from pagefs.impl.guest.datapath import DataPath
from pagefs.impl.guest.window import DaxRange, DaxWindow
from pagefs.impl.machine import PAGE_SIZE


class ReclaimPinned(DaxWindow):
    def _reclaim(self, count: int) -> int:
        with self._lock:
            pinned = {r: r.pins for r in self._busy if r.pins}
            for r in pinned:
                r.pins = 0  # the bug: a pin does not protect the range
        try:
            return super()._reclaim(count)
        finally:
            with self._lock:
                for r, pins in pinned.items():
                    if r.nodeid is not None:
                        r.pins = pins

    def release(self, rng: DaxRange) -> None:
        if rng.pins:  # a range reclaimed under its user has no pin left to drop
            super().release(rng)


class BooksOffByOne(DaxWindow):
    def _publish(self, rng: DaxRange) -> None:
        assert rng.nodeid is not None
        # The bug: the books say the range holds the next file range.
        lib.safemem_books_map(self.books, rng.moffset // self.range_size, rng.nodeid,
                              rng.foffset // self.range_size + 1)


class NoUpgrade(DaxWindow):
    def _upgrade(self, rng: DaxRange, nodeid: int, fh: int) -> None:
        return None  # the bug: the read-only mapping stays as it was


class PreadPastEof(DataPath):
    def pread(self, nodeid: int, fh: int, size: int, offset: int,
              reader: safemem.Reader | None = None, fast: bool = True) -> bytes:
        if self.window is None:
            return super().pread(nodeid, fh, size, offset, reader, fast)
        buffer = bytearray(size)  # the bug: not bounded by the file's size
        done = self._through_window(nodeid, fh, offset, memoryview(buffer), store=False)
        return bytes(buffer[:done])


class InexactFaultCount(DataPath):
    def _window_read(self, nodeid: int, fh: int, view: memoryview, offset: int,
                     reader: safemem.Reader) -> int:
        view = view[: self._within(nodeid, fh, offset, len(view))] if view else view
        if not view:
            return 0
        # The bug: after a fault, the count stays what the copy did (whole pages), not
        # the bytes before the new end of file.
        return self._through_window(nodeid, fh, offset, view, store=False)


class ProbeLastByte(DataPath):
    fast_reads = False  # the C fast read probes by its own rule: every read comes here

    @staticmethod
    def probe_at(end: int) -> int:
        # The bug: that page loads whenever the file reaches into it at all.
        return end - 1 - (end - 1) % PAGE_SIZE


_SWAPS: dict[str, tuple[str, type]] = {
    "reclaim-pinned": ("window", ReclaimPinned),
    "pread-past-eof": ("data", PreadPastEof),
    "inexact-fault-count": ("data", InexactFaultCount),
    "no-upgrade": ("window", NoUpgrade),
    "probe-last-byte": ("data", ProbeLastByte),
    "books-off-by-one": ("window", BooksOffByOne),
}
DRIVER_FAULTS = tuple(_SWAPS)


def broken_connect(fault: str) -> Callable[[str], Share]:
    """connect_share, with the driver's one component swapped for its broken kind."""
    if fault not in _SWAPS:
        raise ValueError(f"unknown driver fault {fault!r}; known: {', '.join(DRIVER_FAULTS)}")
    part, broken = _SWAPS[fault]

    def connect(socket_path: str) -> Share:
        share = connect_share(socket_path)
        component = getattr(share, part)
        assert isinstance(component, broken.__bases__[0])
        component.__class__ = broken
        return share
    return connect


def broken_api(fault: str) -> DaemonFactory:
    """The pagefs-api target with one seeded driver bug."""
    return ApiFactory(broken_connect(fault), name=f"pagefs-api+{fault}")
