"""File data between a caller's buffer and the host: through the window, or by message.

Reads and in-EOF writes go through the DAX window: one copy, by safemem, between the
caller's buffer and the host's page-cache pages, and no READ or WRITE message. A
write that extends the file goes as WRITE (fs/fuse/dax.c does the same: a store
cannot move the host's end of file, and growing it first would not be atomic). With
no window (the back-end offers no DAX, or every range is pinned) data goes by
READ/WRITE messages.

How much of a read is file data, or whether a write lies within the file, is learned
without a round trip where it can be (READ-BOUND, `pagefs.spec.rules.read_probe`): one
byte is loaded at the first page boundary at or after the access's end, through a range
already mapped. The host's kernel answers that load from the file's size at that moment,
whichever host process changed it, so nothing is cached and nothing goes stale; a probe
that faults, or that finds no mapping there, asks the size (GETATTR) instead.

The common read - every range it and its probe touch mapped already - is one C call
(`safemem.pread`, fastread.c), through a per-handle reader of the window's books; it
declines everything else (a miss, a probe or copy that faults, a sequential read entering
a new range), which then takes the general path here.

A fault in the middle of a window copy means the host truncated the file under us
(EOF-FAULT). The size is then fetched again (GETATTR): a read ends short at the new
end of file, a write sends everything from the new end on as WRITE, which is what a
write at that offset means once the file is shorter (stores into the tail of the
last page, past the end, did not fault but are no file data).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from pagefs.impl.guest import safemem
from pagefs.impl.guest.window import DaxRange, DaxWindow
from pagefs.impl.machine import MAX_FILE_OFFSET, PAGE_SIZE
from pagefs.impl.protocol import AttrOut

# File offsets are signed 64-bit on the wire and in the host's kernel (loff_t).

# A read larger than this asks the size first: one round trip is small against such a
# copy, and its buffer is then never larger than what the file holds.
PROBED_READ_MAX = 4 << 20
# A read this small and not sequential, whose range is not mapped, maps it only into a
# free range; with none free it goes by READ: one round trip, where a mapping would cost
# SETUPMAPPING, a REMOVEMAPPING of what it evicts, and the next miss on the evicted range.
SMALL_READ = 64 * 1024


def check_offset(offset: int, what: str = "offset") -> None:
    """EINVAL for a negative offset, EFBIG for one no file can reach."""
    if offset < 0:
        raise OSError(errno.EINVAL, f"negative {what}")
    if offset > MAX_FILE_OFFSET:
        raise OSError(errno.EFBIG, f"{what} beyond the largest file offset")


class DataRequests(Protocol):
    """The requests the data path sends (those of the FUSE client, FuseClient)."""

    def getattr(self, nodeid: int, fh: int | None = None) -> AttrOut: ...
    def read(self, nodeid: int, fh: int, offset: int, size: int) -> bytes: ...
    def write(self, nodeid: int, fh: int, offset: int, data: bytes) -> int: ...


def window_copy(
    window: DaxWindow,
    acquire: Callable[[int], DaxRange],
    release: Callable[[DaxRange], None],
    foffset: int,
    buffer: memoryview,
    store: bool,
) -> int:
    """Copy between `buffer` and file bytes [foffset, foffset + len(buffer)) range by
    range: loads into the buffer, or stores from it when `store`. `acquire(offset)`
    gives the pinned range holding that file offset. Returns the bytes copied, fewer
    than asked only if a fault stopped the copy."""
    done = 0
    while done < len(buffer):
        position = foffset + done
        rng = acquire(position)
        try:
            n = min(len(buffer) - done, rng.foffset + window.range_size - position)
            address = window.address(rng, position)
            piece = buffer[done : done + n]
            copied = safemem.write_from(address, piece) if store else safemem.read_into(
                address, piece
            )
        finally:
            release(rng)
        done += copied
        if copied < n:
            break
    return done


class DataPath:
    """pread/pwrite for one connection: the window when it can, messages otherwise."""

    # Whether readers use the C fast read. The seeded driver bugs of the conformance
    # suite (conformance/driver_faults.py) break a method of the general path, and turn
    # this off so that every read goes through it.
    fast_reads = True

    def __init__(
        self, requests: DataRequests, window: DaxWindow | None, *, max_read: int, max_write: int
    ) -> None:
        self.requests = requests
        self.window = window
        self.max_read = max_read
        self.max_write = max_write
        self._ahead_lock = threading.Lock()
        self._ahead: set[tuple[int, int]] = set()  # (nodeid, range index) being mapped ahead
        self._mapper: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Stop mapping ahead (the connection is going)."""
        with self._ahead_lock:
            mapper, self._mapper = self._mapper, None
        if mapper is not None:
            mapper.shutdown(wait=True, cancel_futures=True)

    def size(self, nodeid: int, fh: int | None = None) -> int:
        return self.requests.getattr(nodeid, fh).attr.size

    def reader(self, nodeid: int) -> safemem.Reader:
        """A reader of `nodeid` (one per handle): the fast read's key to the window's
        books and the handle's sequential hint. One without books without a window."""
        if self.window is None:
            return safemem.no_reader()
        return safemem.new_reader(self.window.books if self.fast_reads else None, nodeid)

    def pread(self, nodeid: int, fh: int, size: int, offset: int,
              reader: safemem.Reader | None = None, fast: bool = True) -> bytes:
        """Up to `size` bytes at `offset` (a buffer no larger than the file holds).
        `reader`: the handle's (see reader()); None, a new one. `fast`: False when the
        caller has tried the fast read already (it would decline again)."""
        if size < 0:
            raise OSError(errno.EINVAL, "negative size")
        check_offset(offset)
        if self.window is None:
            parts = []
            while size > 0 and (part := self.requests.read(
                nodeid, fh, offset, min(size, self.max_read)
            )):
                parts.append(part)
                offset += len(part)
                size -= len(part)
            return b"".join(parts)
        if reader is None:
            reader = self.reader(nodeid)
        if size > PROBED_READ_MAX:
            size = max(0, min(size, self.size(nodeid, fh) - offset))
        elif fast and size >= 2 and (data := safemem.pread_bytes(reader, size, offset)) is not None:
            return data
        buffer = bytearray(size)
        del buffer[self._window_read(nodeid, fh, memoryview(buffer), offset, reader) :]
        return bytes(buffer)

    def pread_into(self, nodeid: int, fh: int, buffer: bytearray | memoryview, offset: int,
                   reader: safemem.Reader | None = None) -> int:
        """Fill `buffer` from file offset `offset`; return the bytes read (short at
        the end of file). Through the window this is the only copy. The general path:
        the caller has tried the fast read (`safemem.pread`) with `reader` already."""
        check_offset(offset)
        view = memoryview(buffer).cast("B")
        if self.window is None:
            return self._read_messages(nodeid, fh, view, offset)
        return self._window_read(nodeid, fh, view, offset,
                                 self.reader(nodeid) if reader is None else reader)

    @staticmethod
    def probe_at(end: int) -> int:
        """READ-BOUND's probe for an access ending at `end`: the first page boundary at
        or after it (`pagefs.spec.rules.read_probe`)."""
        return -(-end // PAGE_SIZE) * PAGE_SIZE

    def reaches(self, nodeid: int, end: int, map_through: int | None = None) -> bool:
        """READ-BOUND: True when the file reaches `end` now, learned with no round trip:
        the page at the first page boundary at or after `end` loads (so the size is past
        it). False means only "ask the size": that page faulted, or no range of this
        inode maps it. `map_through`: a handle to map the probe's range through when it
        is not mapped (a sequential read: the next read needs that range anyway, and its
        mapping ahead is often in flight already), rather than ask the size."""
        window = self.window
        assert window is not None
        probe = self.probe_at(end)
        rng = window.pin_if_mapped(nodeid, probe)
        if rng is None and map_through is not None:
            try:
                rng = window.acquire(nodeid, map_through, probe, False)
            except OSError:
                return False  # no range to be had: the size tells
        if rng is None:
            return False
        try:
            return safemem.loads(window.address(rng, probe))
        finally:
            window.release(rng)

    def _within(self, nodeid: int, fh: int, offset: int, length: int,
                sequential: bool = False) -> int:
        """How many of `length` bytes from `offset` are file data now (READ-BOUND: all,
        if the probe says so; else by the size GETATTR gives). `sequential`: map the
        probe's range if it must (see reaches())."""
        if length and self.reaches(nodeid, offset + length, fh if sequential else None):
            return length
        return max(0, min(length, self.size(nodeid, fh) - offset))

    def _window_read(self, nodeid: int, fh: int, view: memoryview, offset: int,
                     reader: safemem.Reader) -> int:
        window = self.window
        assert window is not None
        sequential = reader.last_end == offset
        # A small random read here was declined by the fast read: its range is not mapped
        # (or its probe or copy faulted). It maps only into a free range: when none is
        # free, mapping would evict a busy range, and it goes by READ instead, one round
        # trip, the least anything could cost it here (never loses to READ).
        evict = sequential or len(view) > SMALL_READ
        if view and not evict and not window.has_free_range():
            return self._read_messages(nodeid, fh, view, offset)
        view = view[: self._within(nodeid, fh, offset, len(view), sequential)] if view \
            else view
        if not view:
            return 0
        end = offset + len(view)
        reader.last_end = end
        if sequential:
            self._map_ahead(nodeid, fh, end)
        try:
            done = self._through_window(nodeid, fh, offset, view, store=False, evict=evict)
        except OSError as err:
            if err.errno != errno.ENOMEM:
                raise
            return self._read_messages(nodeid, fh, view, offset)  # no range to be had
        if done < len(view):
            # EOF-FAULT: the file shrank under the copy; what lies before the new end
            # was copied (faults are page-exact and pages before the end are there).
            done = min(done, max(0, self.size(nodeid, fh) - offset))
        return done

    def _mapped(self, nodeid: int, offset: int, length: int) -> bool:
        """Whether every range [offset, offset + length) touches is mapped now."""
        window = self.window
        assert window is not None
        step = window.range_size
        for start in range(offset - offset % step, offset + length, step):
            rng = window.pin_if_mapped(nodeid, start)
            if rng is None:
                return False
            window.release(rng)
        return True

    def _map_ahead(self, nodeid: int, fh: int, end: int) -> None:
        """A sequential read: map the range after the one it ends in, in the background,
        so that the next reads find it mapped (the window's in-flight mark makes a read
        that gets there first wait for this mapping, not make a second one)."""
        window = self.window
        assert window is not None
        index = end // window.range_size + 1
        key = (nodeid, index)
        if self._mapped(nodeid, index * window.range_size, 1):
            return
        with self._ahead_lock:
            if key in self._ahead or window.closed:
                return
            if self._mapper is None:
                self._mapper = ThreadPoolExecutor(1, thread_name_prefix="pagefs-map-ahead")
            self._ahead.add(key)
            self._mapper.submit(self._map_one, nodeid, fh, index)

    def _map_one(self, nodeid: int, fh: int, index: int) -> None:
        window = self.window
        assert window is not None
        try:
            window.release(window.acquire(nodeid, fh, index * window.range_size, False))
        except (OSError, ConnectionError):
            pass  # only a hint: the read that needs the range maps it, or says why not
        finally:
            with self._ahead_lock:
                self._ahead.discard((nodeid, index))

    def pwrite(
        self, nodeid: int, fh: int, data: bytes, offset: int, *, storable: bool = True
    ) -> int:
        """Write `data` at `offset`. `storable` False when the handle cannot map the
        file writable: opened O_APPEND (the host places the data at its own end of
        file, which only WRITE can do) or write-only (a mapping needs read access,
        as mmap(2) does); then only WRITE is used."""
        view = memoryview(data).cast("B")
        check_offset(offset)
        check_offset(offset + len(view), "end of the write")
        if not view:
            return 0
        done = 0
        if (
            self.window is not None
            and storable
            and self._within(nodeid, fh, offset, len(view)) == len(view)
        ):
            try:
                done = self._through_window(nodeid, fh, offset, view, store=True)
            except OSError as err:
                if err.errno != errno.ENOMEM:
                    raise
            if done < len(view):
                # EOF-FAULT: stores into the last page past the new end did not fault
                # but are not file data; everything from the new end goes by WRITE.
                done = min(done, max(0, self.size(nodeid, fh) - offset))
        return done + self._write_messages(nodeid, fh, view[done:], offset + done)

    def _through_window(
        self, nodeid: int, fh: int, offset: int, buffer: memoryview, store: bool,
        evict: bool = True,
    ) -> int:
        window = self.window
        assert window is not None
        return window_copy(
            window,
            lambda position: window.acquire(nodeid, fh, position, writable=store,
                                            evict=evict),
            window.release,
            offset,
            buffer,
            store,
        )

    def _read_messages(self, nodeid: int, fh: int, view: memoryview, offset: int) -> int:
        done = 0
        while done < len(view):
            part = self.requests.read(
                nodeid, fh, offset + done, min(len(view) - done, self.max_read)
            )
            if not part:
                break
            view[done : done + len(part)] = part
            done += len(part)
        return done

    def _write_messages(self, nodeid: int, fh: int, view: memoryview, offset: int) -> int:
        done = 0
        while done < len(view):
            n = self.requests.write(
                nodeid, fh, offset + done, bytes(view[done : done + self.max_write])
            )
            if n <= 0:
                raise OSError(errno.EIO, "the daemon wrote nothing")
            done += n
        return done
