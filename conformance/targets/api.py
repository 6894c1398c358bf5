"""`pagefs-api`: pagefs judged through the guest driver users call (README's API).

Each case runs pagefs-host on a fresh export, and each guest is a `Share` from
`pagefs.impl.guest.connect`. What the suite asks goes through the API wherever the API
can say it:

- READ and WRITE are `Handle.pread` and `Handle.pwrite`: through the DAX window (one
  copy into the host's pages, with its EOF handling), or by message where the data
  path chooses to; FSYNC is `Share.fsync`, RELEASE is `Handle.close`; CREATE in the
  root is `Share.open(name, O_CREAT | ...)`;
- SETUPMAPPING is `Share.mmap(handle, foffset, ...)`, giving a `Mapping`; LOAD and STORE
  are that Mapping's slices (`m[a:b]`, `m[a:b] = data`), REMOVEMAPPING its `close()`.
  The suite names a window offset; the Mapping chooses its own window ranges (the
  window manager's job), so the target keeps which Mapping stands at each of the suite's
  offsets. A Mapping spans the first SPAN bytes of the 2 MiB the suite asks for: the
  suite's files never reach SPAN, so every byte a case can touch lies in it (an access
  beyond is a harness error, never a verdict);
- the window is small (WINDOW_RANGES ranges of RANGE_SIZE) and, after every data step,
  the target applies memory pressure (`share.window.reclaim`: every range no mapping
  pins is removed), so reclaim and re-mapping happen inside every case.

The API names files by path and keeps nodeids to itself, so requests on nodeids
(LOOKUP, FORGET, GETATTR, SETATTR, OPEN, directories, names) go through the Share's own
FUSE client (`share.requests`), and the Handle for an OPEN is made on that nodeid. Handle
numbers are the suite's, so HANDLE and NODEID are n/a here (the `pagefs` target judges
them on the wire); so are RAW_NAMES (a path cannot carry '/') and CONFINED (the API
resolves symlinks in the guest; the daemon's confinement is the `pagefs` target's).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

from pagefs.conformance.target import (
    CONFINED,
    MAPPINGS,
    OWN_HANDLES,
    PEERS,
    RACES,
    RAW_NAMES,
    READ_ONLY,
    ROOT_NODEID,
    SPECIAL,
    DirEntry,
    Entry,
    Guest,
)
from pagefs.conformance.targets.daemon import DaemonFactory, serve_pagefs
from pagefs.conformance.targets.fuseguest import entry_of, stat_of
from pagefs.impl.guest import Handle, Mapping, Share, connect, safemem
from pagefs.impl.guest.window import DaxRange
from pagefs.impl.protocol import EntryOut

SUITE_RANGE = 2 << 20  # the spec's window range: what the suite's offsets count in
RANGE_SIZE = 8 << 10  # the driver's window granule here: two pages
SPAN = 16 << 10  # what a Mapping covers of the suite's range (files stay below 12.3 KiB)
# Three of the suite's ranges, each pinning at most three of ours, plus one free.
WINDOW_RANGES = 10
WINDOW_SIZE = WINDOW_RANGES * RANGE_SIZE

REASONS = {
    OWN_HANDLES: "through the guest API, handle numbers are the suite's table of the API's "
                 "Handle objects; handle and nodeid hygiene is judged on the wire by the "
                 "pagefs target",
    RAW_NAMES: "the guest API takes paths, which cannot carry '/' in a name",
    SPECIAL: "the guest API has no call for links, device nodes, extended attributes, "
             "fallocate or syncfs",
    CONFINED: "the guest API resolves names and symlinks in the guest; the daemon's "
              "confinement is judged by the pagefs target",
}


class ApiGuest(Guest):
    """One `Share`: data through Handle and Mapping, nodeid requests on its client."""

    def __init__(self, socket_path: str, connect_share: Callable[[str], Share]) -> None:
        self.share = connect_share(socket_path)
        if self.share.window is None:
            self.share.disconnect()
            raise OSError(errno.ENODEV, "pagefs-api: the back-end gave no DAX window")
        self.requests = self.share.requests
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._mappings: dict[int, Mapping] = {}  # the suite's window range -> the Mapping
        self._dirs: dict[int, int] = {}  # directory handle -> its nodeid
        self._mapped: dict[int, int] = {}  # the suite's window range -> the nodeid mapped
        # The driver never forgets a nodeid a Handle or Mapping uses (nor does a kernel):
        # a FORGET the suite sends meanwhile waits here until the last user goes, and the
        # nodeid answers ESTALE to the suite's requests from the moment it was forgotten.
        self._lookups: dict[int, int] = {}
        self._deferred: dict[int, int] = {}

    @property
    def window_size(self) -> int:
        return WINDOW_RANGES * SUITE_RANGE  # in the suite's ranges, which it maps by

    # -- the suite's numbers for the API's objects --

    def _handle(self, fh: int) -> Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise OSError(errno.EBADF, f"unknown handle {fh}") from None

    def _new_fh(self, handle: Handle) -> int:
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        self._handles[fh] = handle
        return fh

    def _entry(self, out: EntryOut) -> Entry:
        self._lookups[out.nodeid] = self._lookups.get(out.nodeid, 0) + 1
        return entry_of(out)

    def _live(self, nodeid: int) -> int:
        if nodeid in self._deferred and self._lookups.get(nodeid, 0) <= 0:
            raise OSError(errno.ESTALE, f"nodeid {nodeid} was forgotten")
        return nodeid

    def _in_use(self, nodeid: int) -> bool:
        return any(h.nodeid == nodeid for h in self._handles.values()) or \
            nodeid in self._mapped.values()

    def _settle(self) -> None:
        """Send the FORGETs that waited for their nodeid's last user."""
        for nodeid in [n for n in self._deferred if not self._in_use(n)]:
            self.requests.forget(nodeid, self._deferred.pop(nodeid))
        self.requests.settle()  # FORGET has no reply: the suite's next step must follow it

    def _pressure(self) -> None:
        """Memory pressure: every window range no Mapping pins is reclaimed now."""
        window = self.share.window
        if window is not None and not window.closed:
            window.reclaim(len(window.ranges))

    # -- nodeid requests, on the Share's own client --

    def lookup(self, parent: int, name: bytes) -> Entry:
        return self._entry(self.requests.lookup(self._live(parent), name))

    def forget(self, nodeid: int, nlookup: int) -> None:
        if nodeid in self._lookups:
            self._lookups[nodeid] -= nlookup
        if self._in_use(nodeid) or nodeid in self._deferred:
            self._deferred[nodeid] = self._deferred.get(nodeid, 0) + nlookup
            return
        self.requests.forget(nodeid, nlookup)
        self.requests.settle()

    def getattr(self, nodeid: int, fh: int | None = None) -> os.stat_result:
        if fh is not None:
            return self.share.stat(self._handle(fh))
        return stat_of(self.requests.getattr(self._live(nodeid)).attr)

    def setattr(self, nodeid: int, fh: int | None = None, *, size: int | None = None,
                mode: int | None = None, mtime_ns: int | None = None) -> os.stat_result:
        real = self._handle(fh).fh if fh is not None else None
        out = self.requests.setattr(self._live(nodeid), real, size=size, mode=mode,
                                    mtime_ns=mtime_ns)
        return stat_of(out.attr)

    def readlink(self, nodeid: int) -> bytes:
        return self.requests.readlink(self._live(nodeid))

    def symlink(self, parent: int, name: bytes, target: bytes) -> Entry:
        return self._entry(self.requests.symlink(self._live(parent), name, target))

    def mkdir(self, parent: int, name: bytes, mode: int) -> Entry:
        return self._entry(self.requests.mkdir(self._live(parent), name, mode))

    def unlink(self, parent: int, name: bytes) -> None:
        self.requests.unlink(self._live(parent), name)

    def rmdir(self, parent: int, name: bytes) -> None:
        self.requests.rmdir(self._live(parent), name)

    def rename(self, parent: int, name: bytes, newparent: int, newname: bytes,
               flags: int = 0) -> None:
        self.requests.rename(self._live(parent), name, self._live(newparent), newname, flags)

    def opendir(self, nodeid: int) -> int:
        fh = self.requests.opendir(self._live(nodeid)).fh
        self._dirs[fh] = nodeid
        return fh

    def readdir(self, fh: int) -> list[DirEntry]:
        entries: list[DirEntry] = []
        offset = 0
        while batch := self.requests.readdir(self._dirs.get(fh, ROOT_NODEID), fh, offset):
            entries += [DirEntry(d.ino, d.off, d.type, d.name) for d in batch]
            offset = batch[-1].off
        return [e for e in entries if e.name not in (b".", b"..")]

    def releasedir(self, fh: int) -> None:
        self.requests.releasedir(self._dirs.pop(fh, ROOT_NODEID), fh)

    def statfs(self, nodeid: int) -> os.statvfs_result:
        out = self.requests.statfs(self._live(nodeid))
        return os.statvfs_result((out.bsize, out.frsize, out.blocks, out.bfree, out.bavail,
                                  out.files, out.ffree, out.ffree, 0, out.namelen))

    # -- handles: the API's Handle --

    def open(self, nodeid: int, flags: int) -> int:
        opened = self.requests.open(self._live(nodeid), flags)
        return self._new_fh(Handle(self.share, nodeid, opened.fh, flags))

    def create(self, parent: int, name: bytes, flags: int, mode: int) -> tuple[Entry, int]:
        if parent != ROOT_NODEID or b"/" in name or name in (b"", b".", b".."):
            out = self.requests.create(self._live(parent), name, flags & ~os.O_CREAT, mode)
            handle = Handle(self.share, out.entry.nodeid, out.open.fh, flags)
            return self._entry(out.entry), self._new_fh(handle)
        handle = self.share.open(name, flags | os.O_CREAT, mode)
        self._lookups[handle.nodeid] = self._lookups.get(handle.nodeid, 0) + 1
        entry = Entry(handle.nodeid, 0, self.share.stat(handle))
        return entry, self._new_fh(handle)

    def read(self, fh: int, offset: int, size: int) -> bytes:
        try:
            return self._handle(fh).pread(size, offset)
        finally:
            self._pressure()

    def read_across_truncate(self, fh: int, offset: int, size: int,
                             truncate: Callable[[], None]) -> bytes:
        """Handle.pread's general path (the C fast read hands it every copy that
        faults), with the host's truncate made when the copy enters its second window
        range: the pages the first range gave are copied, the rest lie past the new end
        of file and fault, and the read must end exactly there (EOF-FAULT). Only this
        thread's acquisitions count: mapping ahead runs on another."""
        handle = self._handle(fh)
        window = self.share.window
        assert window is not None
        acquire, me, pending = window.acquire, threading.get_ident(), [truncate]

        def acquire_then_truncate(nodeid: int, fh: int, foffset: int, writable: bool,
                                  **how: bool) -> DaxRange:
            if pending and threading.get_ident() == me and \
                    foffset // window.range_size > offset // window.range_size:
                pending.pop()()
            return acquire(nodeid, fh, foffset, writable, **how)

        # The handle's reader for this read: no books (so no fast read) and no
        # sequential hint (so no range is mapped ahead of the copy).
        reader, handle._reader = handle._reader, safemem.new_reader(None, handle.nodeid)
        window.acquire = acquire_then_truncate  # type: ignore[method-assign]
        try:
            return self.share.pread(handle, size, offset)
        finally:
            del window.acquire
            handle._reader = reader
            if pending:  # the copy never entered a second range: the host truncates now
                pending.pop()()
            self._pressure()

    def write(self, fh: int, offset: int, data: bytes) -> int:
        try:
            return self._handle(fh).pwrite(data, offset)
        finally:
            self._pressure()

    def flush(self, fh: int) -> None:
        handle = self._handle(fh)
        self.requests.flush(handle.nodeid, handle.fh)

    def fsync(self, fh: int, datasync: bool = False) -> None:
        self.share.fsync(self._handle(fh), datasync)

    def release(self, fh: int) -> None:
        handle = self._handle(fh)
        del self._handles[fh]
        try:
            handle.close()
        finally:
            self._settle()

    # -- memory: Share.mmap and Mapping --

    def _index(self, moffset: int, length: int) -> range:
        if moffset < 0 or length <= 0 or moffset % SUITE_RANGE or length % SUITE_RANGE:
            raise OSError(errno.EINVAL, "not whole window ranges")
        if moffset + length > WINDOW_RANGES * SUITE_RANGE:
            raise OSError(errno.EINVAL, "beyond the window")
        return range(moffset // SUITE_RANGE, (moffset + length) // SUITE_RANGE)

    def setupmapping(self, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> None:
        handle = self._handle(fh)
        indices = self._index(moffset, length)
        if len(indices) != 1:
            raise RuntimeError("pagefs-api maps one of the suite's ranges at a time")
        try:
            mapping = self.share.mmap(handle, foffset, SPAN, writable)
        finally:
            self._pressure()
        old = self._mappings.pop(indices[0], None)
        if old is not None:
            old.close()  # the suite's SETUPMAPPING replaces what stood there
        self._mappings[indices[0]] = mapping
        self._mapped[indices[0]] = handle.nodeid
        self._settle()

    def removemapping(self, moffset: int, length: int) -> None:
        for index in self._index(moffset, length):
            mapping = self._mappings.pop(index, None)
            self._mapped.pop(index, None)
            if mapping is not None:
                mapping.close()
        self._settle()
        self._pressure()

    def _at(self, moffset: int, size: int) -> tuple[Mapping, int]:
        mapping = self._mappings.get(moffset // SUITE_RANGE) if moffset >= 0 else None
        if mapping is None:
            raise OSError(errno.EFAULT, "nothing mapped at this window offset")
        within = moffset % SUITE_RANGE
        if within + size > SPAN:
            raise RuntimeError(f"pagefs-api maps {SPAN} bytes of each range; the suite "
                               f"touched window offset {moffset + size}")
        return mapping, within

    def load(self, moffset: int, size: int) -> bytes:
        mapping, within = self._at(moffset, size)
        try:
            data = mapping[within:within + size]
        finally:
            self._pressure()
        assert isinstance(data, bytes)
        return data

    def store(self, moffset: int, data: bytes) -> None:
        mapping, within = self._at(moffset, len(data))
        if not mapping.writable:
            raise OSError(errno.EFAULT, "store to a read-only mapping")  # a process: SIGSEGV
        try:
            mapping[within:within + len(data)] = data
        finally:
            self._pressure()

    def close(self) -> None:
        for mapping in self._mappings.values():
            mapping.close()
        self._mappings.clear()
        self._handles.clear()
        self.share.disconnect()


def connect_share(socket_path: str) -> Share:
    """The guest driver as a user connects it, with this target's small window."""
    return connect(socket_path, window_size=WINDOW_SIZE, range_size=RANGE_SIZE)


def ApiFactory(connect_share: Callable[[str], Share] = connect_share,  # noqa: N802
               name: str = "pagefs-api") -> DaemonFactory:
    """pagefs-host per case, each guest a Share made by `connect_share` (a seeded bug
    swaps in a broken driver)."""
    return DaemonFactory(name, frozenset({MAPPINGS, PEERS, READ_ONLY, RACES}), serve_pagefs,
                         REASONS, WINDOW_SIZE,
                         lambda socket_path, _size: ApiGuest(socket_path, connect_share))
