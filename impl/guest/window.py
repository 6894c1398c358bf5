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
the donated fd into the window). Callers serialise nothing. Locking is dax.c's: each
inode's interval map has a lock of its own, and the free list, the busy list and the
pins share one short lock; no lock is held across a request's round trip. A file range
being set up is marked in flight in its inode's map, so a second miss on it waits for
the first (no lock held) while hits elsewhere, in this inode or any other, go on.
Lock order: an inode's lock, then the short one.

A REMOVEMAPPING that fails leaves its ranges in an unknown state (the daemon may still
map them): they are logged and kept aside as stale, neither free nor reachable, and
sent again with the next reclaim.

Every mapped range is also entered in the books C reads (fastread.c): published once its
SETUPMAPPING is answered, withdrawn before its REMOVEMAPPING is sent. A read whose ranges
are all there is served by one C call, without this module (`safemem.pread`); such a read
marks its range used, and reclaim moves the marked ranges to the recent end of its LRU
list before it picks victims.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from pagefs.impl.guest._safemem import ffi, lib
from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.protocol.constants import FUSE_REMOVEMAPPING_MAX_ENTRY

log = logging.getLogger("pagefs.guest")

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
    # File range index -> set when its SETUPMAPPING (on a miss) has been answered.
    in_flight: dict[int, threading.Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    dead: bool = False  # dropped from the window's table: look the inode up again


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
        if range_size <= 0 or range_size & (range_size - 1) or range_size % PAGE_SIZE:
            raise ValueError("range size must be a power of two and a multiple of the page")
        if size < range_size:
            raise ValueError("window smaller than one range")
        self.base = base
        self.range_size = range_size
        self.requests = requests
        self.reclaim_chunk = reclaim_chunk
        self.ranges = [DaxRange(i * range_size) for i in range(size // range_size)]
        # Under the short lock: the free list, the busy list (least recently used first),
        # the pins, the inode table, the stale ranges, and whether the window is closed.
        self._lock = threading.Lock()
        self._free: list[DaxRange] = list(reversed(self.ranges))
        self._busy: OrderedDict[DaxRange, None] = OrderedDict()
        self._stale: list[DaxRange] = []  # a REMOVEMAPPING failed: state unknown
        self._inodes: dict[int, _Inode] = {}
        self._closed = False
        self._shift = range_size.bit_length() - 1
        books = lib.safemem_books_new(base, len(self.ranges), self._shift)
        if books == ffi.NULL:
            raise MemoryError("no memory for the window's books")
        # Freed with the window: a reader (below) is used only through a Handle or a
        # DataPath, which keep the window alive.
        self.books = ffi.gc(books, lib.safemem_books_free)
        self._used = ffi.new("uint32_t[]", len(self.ranges))  # _note_used's, short lock

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

    def has_free_range(self) -> bool:
        """Whether a range is free now: a hint for a policy, read with no lock (the
        answer may be stale by the time it is used)."""
        return bool(self._free)

    def free_count(self) -> int:
        with self._lock:
            return len(self._free)

    def under_pressure(self) -> bool:
        """Whether mapping one more range now would evict a busy one (the free list is
        below the reclaim mark)."""
        with self._lock:
            return len(self._free) * 100 < len(self.ranges) * RECLAIM_FREE_PERCENT

    def stale_count(self) -> int:
        """Ranges kept aside after a failed REMOVEMAPPING, to be removed again."""
        with self._lock:
            return len(self._stale)

    def mapped(self, nodeid: int) -> dict[int, DaxRange]:
        """A snapshot of an inode's interval map (file offset -> range)."""
        inode = self._inode(nodeid, create=False)
        if inode is None:
            return {}
        with inode.lock:
            return {i * self.range_size: r for i, r in inode.ranges.items()}

    def acquire(self, nodeid: int, fh: int, foffset: int, writable: bool, *,
                evict: bool = True) -> DaxRange:
        """Pin the range that maps `foffset` of `nodeid`, mapping or upgrading it
        through handle `fh` as needed. `evict` False: a miss takes a free range or fails
        with ENOMEM, never reclaiming a mapped one. Raises OSError (ENOMEM: every range pinned;
        or the daemon's errno, e.g. EACCES/EBADF/EROFS for a writable mapping)."""
        index = foffset // self.range_size
        while True:
            inode = self._inode(nodeid, create=True)
            assert inode is not None
            with inode.lock:
                if inode.dead:
                    continue
                rng = inode.ranges.get(index)
                waiting = inode.in_flight.get(index)
                if rng is not None:
                    with self._lock:
                        self._check_open()
                        self._pin(rng)
                    upgrade = writable and not rng.writable
                elif waiting is None:
                    done = inode.in_flight[index] = threading.Event()
            if rng is not None:
                if upgrade:
                    self._upgrade(rng, nodeid, fh)
                return rng
            if waiting is None:
                return self._map(inode, nodeid, fh, index, writable, done, evict)
            waiting.wait()  # another thread's SETUPMAPPING of this range: then look again

    def acquire_run(self, nodeid: int, fh: int, foffset: int, count: int,
                    writable: bool) -> list[DaxRange] | None:
        """Pin `count` consecutive ranges from range-aligned `foffset`, mapped by ONE
        SETUPMAPPING into as many contiguous free window ranges (one SHMEM_MAP round trip
        for all). None, with nothing done, unless none of them is mapped or in flight and
        the free list holds such a run: then acquire() them one by one."""
        step = self.range_size
        first = foffset // step
        indices = range(first, first + count)
        inode = self._inode(nodeid, create=True)
        assert inode is not None
        with inode.lock:
            if inode.dead or any(i in inode.ranges or i in inode.in_flight for i in indices):
                return None
            with self._lock:
                if self._closed:
                    return None
                run = self._take_free_run(count)
            if run is None:
                return None
            done = threading.Event()
            for i in indices:
                inode.in_flight[i] = done
        try:
            self.requests.setupmapping(nodeid, fh, first * step, count * step, writable,
                                       run[0].moffset)
            with inode.lock, self._lock:
                self._check_open()
                for i, rng in zip(indices, run, strict=True):
                    rng.nodeid, rng.foffset, rng.writable = nodeid, i * step, writable
                    inode.ranges[i] = rng
                    self._pin(rng)
                    self._publish(rng)
            return run
        except BaseException:
            with self._lock:
                self._free.extend(r for r in run if r.nodeid is None)
            raise
        finally:
            with inode.lock, self._lock:
                for i in indices:
                    del inode.in_flight[i]
                self._drop_if_empty(nodeid, inode)
            done.set()

    def _take_free_run(self, count: int) -> list[DaxRange] | None:
        """`count` free ranges adjacent in the window, off the free list (short lock
        held), or None."""
        free = sorted(self._free, key=lambda r: r.moffset)
        for at in range(len(free) - count + 1):
            run = free[at:at + count]
            if run[-1].moffset - run[0].moffset == (count - 1) * self.range_size:
                taken = set(map(id, run))
                self._free = [r for r in self._free if id(r) not in taken]
                return run
        return None

    def pin_if_mapped(self, nodeid: int, foffset: int) -> DaxRange | None:
        """Pin the range holding `foffset` if it is mapped now (a hit), or return None:
        never a round trip (READ-BOUND's probe looks only where a mapping already is)."""
        inode = self._inode(nodeid, create=False)
        if inode is None:
            return None
        with inode.lock:
            rng = inode.ranges.get(foffset // self.range_size)
            if rng is None:
                return None
            with self._lock:
                if self._closed:
                    return None
                self._pin(rng)
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
        inode = self._inode(nodeid, create=False)
        if inode is None:
            return
        with inode.lock, self._lock:
            victims = [r for r in inode.ranges.values() if r.pins == 0]
            self._take_off_books(inode, victims)
        self._remove(victims)

    def reclaim(self, count: int | None = None) -> int:
        """Remove up to `count` (default: the reclaim chunk) unpinned ranges, least
        recently used first; return how many."""
        return self._reclaim(self.reclaim_chunk if count is None else count)

    def close(self) -> None:
        """Remove every mapping, pinned or not (the guest is going away)."""
        with self._lock:
            if self._closed:
                return
            for rng in self._busy:
                self._withdraw(rng)
            lib.safemem_books_close(self.books)  # and Mappings' reads (safemem_span_read)
            self._closed = True
            victims = [*self._busy, *self._stale]
            self._busy.clear()
            self._stale.clear()
        for batch in self._batches(victims):
            try:
                self.requests.removemapping([(r.moffset, self.range_size) for r in batch])
            except (OSError, ConnectionError) as err:  # the daemon has often gone first
                log.info("REMOVEMAPPING of %d ranges at close failed: %s", len(batch), err)

    # -- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.ENOTCONN, "the DAX window is closed")

    def _inode(self, nodeid: int, *, create: bool) -> _Inode | None:
        with self._lock:
            inode = self._inodes.get(nodeid)
            if inode is None and create:
                inode = self._inodes[nodeid] = _Inode()
            return inode

    def _pin(self, rng: DaxRange) -> None:
        """One more user of `rng`, now its most recent (short lock held)."""
        rng.pins += 1
        self._busy[rng] = None
        self._busy.move_to_end(rng)

    def _map(self, inode: _Inode, nodeid: int, fh: int, index: int, writable: bool,
             done: threading.Event, evict: bool = True) -> DaxRange:
        """A miss: take a free range and SETUPMAPPING it, no lock held meanwhile; the
        in-flight mark on `index` keeps a second miss on it waiting."""
        rng: DaxRange | None = None
        try:
            rng = self._take_free_range(evict)
            self.requests.setupmapping(nodeid, fh, index * self.range_size, self.range_size,
                                       writable, rng.moffset)
            with inode.lock, self._lock:
                self._check_open()
                rng.nodeid, rng.foffset, rng.writable = nodeid, index * self.range_size, writable
                inode.ranges[index] = rng
                self._pin(rng)
                self._publish(rng)
            return rng
        except BaseException:
            if rng is not None and rng.nodeid is None:
                with self._lock:
                    self._free.append(rng)
            raise
        finally:
            with inode.lock, self._lock:
                del inode.in_flight[index]
                self._drop_if_empty(nodeid, inode)
            done.set()

    def _upgrade(self, rng: DaxRange, nodeid: int, fh: int) -> None:
        """A write access to a read-only range: the same window range, mapped again with
        FLAG_WRITE (the range is pinned meanwhile, so nothing reclaims it)."""
        try:
            self.requests.setupmapping(nodeid, fh, rng.foffset, self.range_size, True,
                                       rng.moffset)
        except BaseException:
            self.release(rng)
            raise
        rng.writable = True

    def _take_free_range(self, evict: bool = True) -> DaxRange:
        with self._lock:
            self._check_open()
        if evict and self.under_pressure():
            # Inline reclaim; dax.c does it in a worker, we have none to wake.
            self._reclaim(self.reclaim_chunk)
        with self._lock:
            self._check_open()
            if not self._free:
                raise OSError(errno.ENOMEM, "every DAX window range is pinned")
            return self._free.pop()

    def _reclaim(self, count: int) -> int:
        with self._lock:
            self._note_used()
            candidates = [r for r in self._busy if r.pins == 0][:count]
            stale, self._stale = self._stale, []
        victims: list[DaxRange] = []
        for rng in candidates:
            nodeid = rng.nodeid
            inode = self._inode(nodeid, create=False) if nodeid is not None else None
            if inode is None:
                continue
            # Checked again under the inode's lock: a hit may have pinned it meanwhile.
            with inode.lock, self._lock:
                if rng.pins == 0 and rng.nodeid == nodeid and rng in self._busy:
                    self._take_off_books(inode, [rng])
                    victims.append(rng)
        self._remove(stale + victims)
        return len(victims)

    def _take_off_books(self, inode: _Inode, victims: list[DaxRange]) -> None:
        """Out of the inode's map and the busy list (the inode's lock and the short lock
        held): nobody finds them any more, so they may be removed with no lock held."""
        for r in victims:
            self._withdraw(r)
            del inode.ranges[r.foffset // self.range_size]
            del self._busy[r]
        if victims:
            assert victims[0].nodeid is not None
            self._drop_if_empty(victims[0].nodeid, inode)

    def _publish(self, rng: DaxRange) -> None:
        """Enter a range just mapped in the books (short lock held)."""
        assert rng.nodeid is not None
        rc = lib.safemem_books_map(self.books, rng.moffset >> self._shift, rng.nodeid,
                                   rng.foffset >> self._shift)
        assert rc == 0, "a range published twice"

    def _withdraw(self, rng: DaxRange) -> None:
        """Take a range out of the books (short lock held), before it is unmapped: no
        fast read returns data copied from it after this. A closed window withdrew
        them all."""
        if self._closed:
            return
        rc = lib.safemem_books_unmap(self.books, rng.moffset >> self._shift)
        assert rc == 0, "a range withdrawn that was not published"

    def _note_used(self) -> None:
        """Move the ranges fast reads used since the last look to the recent end of the
        LRU list (short lock held)."""
        used = self._used
        for i in range(lib.safemem_books_used(self.books, used, len(self.ranges))):
            rng = self.ranges[used[i]]
            if rng in self._busy:
                self._busy.move_to_end(rng)

    def _drop_if_empty(self, nodeid: int, inode: _Inode) -> None:
        """An inode with nothing mapped or in flight leaves the table (both locks held),
        so the table does not grow with every file ever touched."""
        if not inode.ranges and not inode.in_flight and not inode.dead:
            inode.dead = True
            del self._inodes[nodeid]

    def _remove(self, victims: list[DaxRange]) -> None:
        """REMOVEMAPPING, no lock held: the ranges a reply confirms go back to the free
        list; those of a request that failed are logged and kept aside as stale (the
        daemon may still map them), for the next reclaim to send again."""
        for batch in self._batches(victims):
            try:
                self.requests.removemapping([(r.moffset, self.range_size) for r in batch])
            except (OSError, ConnectionError) as err:
                log.warning("REMOVEMAPPING of %d window ranges failed (%s): kept aside, "
                            "sent again at the next reclaim", len(batch), err)
                with self._lock:
                    self._stale.extend(batch)
                continue
            with self._lock:
                for r in batch:
                    r.nodeid, r.foffset, r.writable, r.pins = None, 0, False, 0
                    self._free.append(r)

    @staticmethod
    def _batches(victims: list[DaxRange]) -> list[list[DaxRange]]:
        """One REMOVEMAPPING holds at most FUSE_REMOVEMAPPING_MAX_ENTRY ranges: more (a
        guest's whole window, at disconnect) go as several."""
        step = FUSE_REMOVEMAPPING_MAX_ENTRY
        return [victims[at:at + step] for at in range(0, len(victims), step)]
