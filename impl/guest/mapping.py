"""A user's mapping of a file through the DAX window.

`Share.mmap()` returns a `Mapping`: the window ranges covering the requested file
bytes, pinned for as long as the mapping is open (they are never reclaimed under
it). Loads and stores go straight to the host's page-cache pages, so another guest
mapping the same file, or the host itself, sees a store at once (COH-WRITE,
COH-PEER), and this mapping sees theirs (COH-READ).

Safe access (`read`, `write`, indexing, slicing) goes through safemem: if the host
truncated the file, an access to a page wholly beyond the new end ends with a short
result or OSError(EFAULT) (EOF-FAULT), and the known size is refreshed; the process
lives on. `unsafe_views()` is the escape hatch: raw memoryviews of the window, as
fast as memory gets, with no such protection — touching a vanished page through
them kills the process with SIGBUS, exactly like a native mmap.

A mapping outlives the handle it was made through (LIFETIME); close it, or use it
as a context manager, to unpin its ranges.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

from pagefs.impl.guest import safemem
from pagefs.impl.guest._safemem import ffi, lib
from pagefs.impl.guest.datapath import window_copy
from pagefs.impl.guest.window import DaxRange, DaxWindow

_pointer = ffi.from_buffer  # module globals: the fast reads look up no attribute
_span_read = lib.safemem_span_read
_span_enter = lib.safemem_span_enter
_span_leave = lib.safemem_span_leave


class Mapping:
    """Bytes [offset, offset + length) of one file, mapped through the window."""

    def __init__(
        self,
        window: DaxWindow,
        nodeid: int,
        fh: int,
        offset: int,
        length: int,
        writable: bool,
        refresh_size: Callable[[], int],
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self._window = window
        self.offset = offset
        self.length = length
        self.writable = writable
        self._refresh_size = refresh_size
        self._on_close = on_close
        self._size: int | None = None  # the file's size as last seen; asked only when needed
        self._closing = threading.Lock()  # one close() releases the pins
        step = self._range_size = window.range_size
        self._first = offset - offset % step
        # The pins this mapping holds, one per window range in file order: not a record of
        # the window (that is the DaxWindow's), only what to release at close.
        self._pins: list[DaxRange] | None = []
        try:
            count = -(-(offset + length - self._first) // step)
            # Several ranges: one SETUPMAPPING for all when the window has them side by side.
            run = window.acquire_run(nodeid, fh, self._first, count, writable) \
                if count > 1 else None
            if run is not None:
                self._pins.extend(run)
            else:
                for start in range(self._first, offset + length, step):
                    self._pins.append(window.acquire(nodeid, fh, start, writable))
        except BaseException:
            self._release_pins()
            raise
        # Where each range starts in memory: the pinned ranges never move.
        self._addresses = [window.address(r, r.foffset) for r in self._pins]
        # The same, for reads in one C call (fastread.c's safemem_span_read).
        self._span_addresses = ffi.new("uintptr_t[]", self._addresses)
        self._span = ffi.new("struct safemem_span *", {
            "books": window.books, "length": length, "first_within": offset - self._first,
            "addresses": self._span_addresses, "count": len(self._addresses)})

    @property
    def size(self) -> int:
        """The file's size as last seen: asked (GETATTR) the first time, and again after a
        fault; COH-META for it is one GETATTR away, the loads themselves are exact."""
        if self._size is None:
            self._size = self._refresh_size()
        return self._size

    def __len__(self) -> int:
        return self.length

    @property
    def closed(self) -> bool:
        return self._pins is None

    def close(self) -> None:
        """Unpin the ranges; the window may reclaim them from now on. A read or write on
        another thread meanwhile completes before the pins go, or raises ValueError."""
        with self._closing:
            if self._pins is None:
                return
            # No access begins from here on, and those under way end first: an unpinned
            # range may be unmapped, or map another file, at once.
            lib.safemem_span_close(self._span)
            self._release_pins()
        self._on_close()

    def __enter__(self) -> Mapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Pins must not leak with the object; a mapping dropped unclosed is closed here.
        if getattr(self, "_pins", None) is not None:
            self.close()

    def read(self, position: int, size: int) -> bytes:
        """Up to `size` bytes at `position` (relative to the mapping). Short if the
        mapping ends, or if the host truncated the file under it; OSError(EFAULT) if
        not even the first byte could be loaded."""
        if 2 <= size <= self.length - position:
            # The common case in one C call and one copy, into the bytes returned (a new
            # object nobody else has seen, filled in place: see safemem.read).
            data = bytes(size)
            try:
                if _span_read(self._span, _pointer(data), size, position) == size:
                    return data
            except (TypeError, OverflowError):
                pass  # not an index C takes: the general path says why
        self._check(position, 0)
        buffer = bytearray(max(0, min(size, self.length - position)))
        del buffer[self._read_into(position, buffer) :]
        return bytes(buffer)

    def read_into(self, position: int, buffer: bytearray | memoryview) -> int:
        """Like read(), into `buffer` (up to its length): the one copy; return the count."""
        try:
            dst = _pointer("char[]", buffer, True)
            n = min(len(dst), self.length - position)
            done = _span_read(self._span, dst, n, position) if n >= 0 else -1
        except (TypeError, ValueError, BufferError, OverflowError):
            done = -1  # not a buffer or a position C takes: the general path says why
        return done if done >= 0 else self._read_into(position, buffer)

    def _read_into(self, position: int, buffer: bytearray | memoryview) -> int:
        """read_into()'s general path: every check, and a fault's consequences."""
        view = memoryview(buffer).cast("B")
        self._enter()
        try:
            self._check(position, 0)
            view = view[: max(0, self.length - position)]
            return self._copy(position, view, store=False)
        finally:
            _span_leave(self._span)

    def write(self, position: int, data: bytes) -> int:
        """Store `data` at `position`; return the bytes stored (fewer only if the host
        truncated the file under the mapping; none at all is OSError(EFAULT))."""
        if not self.writable:
            raise OSError(errno.EACCES, "mapping is read-only")
        view = memoryview(data).cast("B")
        self._enter()
        try:
            self._check(position, len(view))
            return self._copy(position, view, store=True)
        finally:
            _span_leave(self._span)

    def __getitem__(self, index: int | slice) -> int | bytes:
        if isinstance(index, slice):
            start, stop, stride = index.indices(self.length)
            if stride != 1:
                raise ValueError("mapping slices must be contiguous")
            return self._exact(start, max(0, stop - start))
        if index < 0:
            index += self.length
        self._check(index, 1)
        return self._exact(index, 1)[0]

    def __setitem__(self, index: int | slice, value: int | bytes) -> None:
        if isinstance(index, slice):
            if isinstance(value, int):
                raise TypeError("a slice takes bytes")
            start, stop, stride = index.indices(self.length)
            if stride != 1 or stop - start != len(value):
                raise ValueError("slice assignment must be contiguous and keep the length")
            data = bytes(value)
        else:
            if not isinstance(value, int):
                raise TypeError("an index takes an int")
            start = index + self.length if index < 0 else index
            data = bytes([value])
        if self.write(start, data) != len(data):
            raise OSError(errno.EFAULT, "store beyond the end of the file")

    def unsafe_views(self) -> list[memoryview]:
        """UNSAFE. Writable (if the mapping is) memoryviews of the window covering
        the mapping, in file order, one per window range (consecutive file ranges
        are not contiguous in the window). No fault containment: a load or store of
        a page beyond a host truncation raises SIGBUS and ends the process. Views must
        not be used after close()."""
        self._check(0, 0)
        views = []
        position = 0
        while position < self.length:
            foffset = self.offset + position
            rng = self._range_at(foffset)
            n = min(self.length - position, rng.foffset + self._window.range_size - foffset)
            address = self._window.address(rng, foffset)
            view = memoryview(ffi.buffer(ffi.cast("char *", address), n))
            views.append(view if self.writable else view.toreadonly())
            position += n
        return views

    def unsafe_memoryview(self) -> memoryview:
        """UNSAFE. The one raw memoryview of a mapping that lies within one window
        range (see unsafe_views()); ValueError if it spans several."""
        views = self.unsafe_views()
        if len(views) != 1:
            raise ValueError("mapping spans several window ranges; use unsafe_views()")
        return views[0]

    # -- internals --------------------------------------------------------------------

    def _exact(self, position: int, size: int) -> bytes:
        data = self.read(position, size)
        if len(data) != size:
            raise OSError(errno.EFAULT, "load beyond the end of the file")
        return data

    def _enter(self) -> None:
        """An access to the mapping's memory begins (close() waits for its end)."""
        if not _span_enter(self._span):
            raise ValueError("mapping is closed")

    def _check(self, position: int, size: int) -> None:
        if self._pins is None:
            raise ValueError("mapping is closed")
        if self._window.closed:
            # The window's memory is gone with the connection: never touch it again.
            raise OSError(errno.ENOTCONN, "the share was disconnected")
        if position < 0 or position + size > self.length:
            raise IndexError("outside the mapping")

    def _range_at(self, foffset: int) -> DaxRange:
        if self._pins is None:
            raise ValueError("mapping is closed")
        return self._pins[(foffset - self._first) // self._range_size]

    def _copy(self, position: int, buffer: memoryview, store: bool) -> int:
        foffset = self.offset + position
        within = foffset % self._range_size
        if within + len(buffer) <= self._range_size:
            # Within one range, the common case: straight to the copy.
            address = self._addresses[(foffset - self._first) // self._range_size] + within
            if store:
                done = safemem.write_from(address, buffer)
            else:
                done = safemem.read_into(address, buffer)
        else:
            done = window_copy(
                self._window, self._range_at, lambda rng: None, foffset, buffer, store
            )
        if done < len(buffer):
            try:
                self._size = self._refresh_size()  # EOF-FAULT: learn the new end of file
            except OSError:
                pass  # the fault is the answer; a lost connection shows on the next call
            if store:
                # Stores into the last page past the end did not fault, but they are
                # not file data: count only what lies before the end.
                if self._size is not None:
                    done = min(done, max(0, self._size - foffset))
            if done == 0:
                raise OSError(errno.EFAULT, "access beyond the end of the file")
        return done

    def _release_pins(self) -> None:
        pins, self._pins = self._pins, None
        for rng in pins or ():
            self._window.release(rng)
