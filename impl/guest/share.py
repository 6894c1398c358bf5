"""The guest's view of an export: paths, handles, data and mappings.

A `Share` is one guest's connection to a daemon. Its methods read like the `os`
module's, with handles in place of descriptors; every failure is an OSError with
the errno the daemon (or the guest's own checks) gave. Paths are relative to the
export root ('/' or '' is the root). The path walk is the guest's, as in a kernel:
'.' and '..' and symlinks are resolved here and never go over the wire, and nothing
names a place above the root.

    with connect("/run/pagefs.sock") as share:
        share.write_file("notes.txt", b"hello")
        with share.open("notes.txt", os.O_RDWR) as f, share.mmap(f, 0, 4096, True) as m:
            m[0:5] = b"HELLO"      # a store on the host's page: visible there at once

Nodeids come from LOOKUP and are remembered with their lookup counts; they are
handed back with BATCH_FORGET when the table grows, those no handle or mapping
uses; on disconnect the host drops them all (RECLAIM). A Share may be used from
several threads; requests from them are in flight together.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.guest import safemem
from pagefs.impl.guest._safemem import ffi, lib
from pagefs.impl.guest.datapath import PROBED_READ_MAX, DataPath, check_offset
from pagefs.impl.guest.mapping import Mapping
from pagefs.impl.guest.window import DaxWindow
from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.protocol import Attr, EntryOut, open_flags
from pagefs.impl.protocol.constants import FUSE_ROOT_ID

MAX_SYMLINK_HOPS = 40  # Linux's limit on symlinks followed in one path walk
# How many nodeids to remember before handing unused ones back with FORGET.
FORGET_THRESHOLD = 1024

PathLike = str | bytes | os.PathLike


def stat_result(attr: Attr) -> os.stat_result:
    """A FUSE attribute record as the `os` module's stat result (st_dev is 0)."""
    return attr.to_stat()


@dataclass(eq=False)
class Handle(open_flags.OpenAccess):
    """An open file. Methods are shortcuts for the Share's handle-level calls."""

    share: Share
    nodeid: int
    fh: int
    flags: int
    position: int = 0
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The fast read's key (DataPath.reader): one without books unless open, readable and
    # through a window, so that the fast read needs no check of its own.
    _reader: safemem.Reader = field(default_factory=safemem.no_reader, repr=False)

    def __post_init__(self) -> None:
        if self.readable and not self.closed:
            self._reader = self.share.data.reader(self.nodeid)

    @property
    def storable(self) -> bool:
        """Whether a writable mapping can be made through this handle (O_RDWR, no
        O_APPEND), so that writes may be stores through the window."""
        return self.readable and self.writable and not self.flags & os.O_APPEND

    def read(self, size: int = -1) -> bytes:
        return self.share.read(self, size)

    def write(self, data: bytes) -> int:
        return self.share.write(self, data)

    def pread(self, size: int, offset: int) -> bytes:
        """Share.pread; the common read is one C call, as in pread_into()."""
        if 2 <= size <= PROBED_READ_MAX and (
                data := safemem.pread_bytes(self._reader, size, offset)) is not None:
            return data
        return self.share._pread(self, size, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return self.share.pwrite(self, data, offset)

    def pread_into(self, buffer: bytearray | memoryview, offset: int) -> int:
        """Share.pread_into. The common read (through the window, every range it touches
        mapped) is this one frame and one C call (fastread.c); the rest, and every error,
        goes the general way."""
        try:
            dst = _writable("char[]", buffer, True)
            done = _fast_pread(self._reader, dst, len(dst), offset)
        except (TypeError, ValueError, BufferError, OverflowError):
            done = -1  # not a buffer or an offset C takes: the general path says why
        return done if done >= 0 else self.share._pread_into(self, buffer, offset)

    def close(self) -> None:
        self.share.close(self)

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.closed:
            self.close()


_writable = ffi.from_buffer  # module globals: Handle.pread_into looks up no attribute
_fast_pread = lib.safemem_pread


def _encode(path: PathLike) -> bytes:
    """A path or symlink target as bytes; NUL cannot be in one (EINVAL, as POSIX)."""
    encoded = os.fsencode(path)
    if b"\0" in encoded:
        raise OSError(errno.EINVAL, "path contains NUL")
    return encoded


def _check_mode(mode: int) -> None:
    if not 0 <= mode <= 0o7777:
        raise OSError(errno.EINVAL, "mode out of range (permission and set-id bits only)")


def _split_parent(path: PathLike) -> tuple[bytes, bytes]:
    """(directory part, last name) of a path that names an entry to create or remove."""
    head, _, name = _encode(path).rstrip(b"/").rpartition(b"/")
    if name in (b"", b".", b".."):
        raise OSError(errno.EINVAL, "the path names no entry")
    return head, name


class Share:
    """One guest's connection to an export (see the module docstring)."""

    def __init__(
        self,
        requests: FuseClient,
        window: DaxWindow | None,
        *,
        max_read: int = 128 * 1024,
        max_write: int = 128 * 1024,
        on_close: list[Callable[[], None]] | None = None,
        forget_threshold: int = FORGET_THRESHOLD,
    ) -> None:
        """Use connect(); this takes a connected FUSE client, the window manager over
        its DAX window (None: READ/WRITE only), and what to call on disconnect."""
        self.requests = requests
        self.window = window
        self.data = DataPath(requests, window, max_read=max_read, max_write=max_write)
        self._lock = threading.Lock()
        # nodeid -> [lookups not yet forgotten, forget pass of the latest lookup]
        self._lookups: dict[int, list[int]] = {}
        self._users: dict[int, int] = {}  # nodeid -> open handles and mappings
        self._forget_threshold = forget_threshold
        self._forget_pass = 0
        self._new_lookups = 0
        self._on_close = on_close or []
        self._closed = False

    @property
    def dax(self) -> bool:
        """Whether data goes through the DAX window (False: READ/WRITE fallback)."""
        return self.window is not None

    # -- connection --------------------------------------------------------------------

    def disconnect(self) -> None:
        """Unmap the window and end the connection; the host releases whatever this
        guest still held (RECLAIM). Mappings still open fail with ENOTCONN from now
        on; an access racing with disconnect in another thread is the caller's race,
        as munmap under a reader is."""
        if self._closed:
            return
        self._closed = True
        try:
            self.data.close()
            if self.window is not None:
                self.window.close()
        finally:
            for close in self._on_close:
                close()

    def __enter__(self) -> Share:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- names -------------------------------------------------------------------------

    def _lookup(self, parent: int, name: bytes) -> EntryOut:
        entry = self.requests.lookup(parent, name)
        self._count_lookup(entry)
        return entry

    def _count_lookup(self, entry: EntryOut) -> None:
        with self._lock:
            record = self._lookups.setdefault(entry.nodeid, [0, 0])
            record[0] += 1
            record[1] = self._forget_pass
            self._new_lookups += 1

    def _walk(self, path: PathLike, *, follow: bool = True) -> tuple[int, int]:
        """(nodeid, mode) of what `path` names. Symlinks are followed here, in the
        guest, as a kernel's VFS does (never by the host: CONFINE): a relative target
        from the link's directory, an absolute one from the export root; the last
        component only when `follow`. '..' climbs the walked path, never above root."""
        self._forget_unused()
        names = deque(_encode(path).split(b"/"))
        walked = [(FUSE_ROOT_ID, stat.S_IFDIR)]
        hops = 0
        while names:
            name = names.popleft()
            if name in (b"", b"."):
                continue
            if name == b"..":
                if len(walked) > 1:
                    walked.pop()
                continue
            entry = self._lookup(walked[-1][0], name)
            if stat.S_ISLNK(entry.attr.mode) and (follow or any(names)):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links")
                target = self.requests.readlink(entry.nodeid)
                if target.startswith(b"/"):
                    del walked[1:]
                names.extendleft(reversed(target.split(b"/")))
                continue
            walked.append((entry.nodeid, entry.attr.mode))
        return walked[-1]

    def _resolve(self, path: PathLike) -> int:
        return self._walk(path)[0]

    def _parent(self, path: PathLike) -> tuple[int, bytes]:
        head, name = _split_parent(path)
        nodeid, mode = self._walk(head)
        if not stat.S_ISDIR(mode):
            raise OSError(errno.ENOTDIR, "not a directory")
        return nodeid, name

    def _use(self, nodeid: int, delta: int) -> None:
        with self._lock:
            self._users[nodeid] = self._users.get(nodeid, 0) + delta
            if self._users[nodeid] <= 0:
                del self._users[nodeid]

    def _forget_unused(self) -> None:
        """Hand back nodeids no handle or mapping uses and no lookup has named since
        the previous pass: a nodeid a walk has just returned, for the request that
        follows it (maybe in another thread), is never among them."""
        with self._lock:
            if (len(self._lookups) < self._forget_threshold
                    or self._new_lookups < self._forget_threshold // 2):
                return
            unused = {
                nodeid: count
                for nodeid, (count, last_pass) in self._lookups.items()
                if nodeid not in self._users and last_pass < self._forget_pass
            }
            for nodeid in unused:
                del self._lookups[nodeid]
            self._forget_pass += 1
            self._new_lookups = 0
        if self.window is not None:
            for nodeid in unused:
                self.window.forget(nodeid)
        if unused:
            self.requests.batch_forget(list(unused.items()))

    # -- path-level calls --------------------------------------------------------------

    def stat(self, target: PathLike | Handle) -> os.stat_result:
        if isinstance(target, Handle):
            self._check_open(target)
            return stat_result(self.requests.getattr(target.nodeid, target.fh).attr)
        return stat_result(self.requests.getattr(self._resolve(target)).attr)

    def lstat(self, path: PathLike) -> os.stat_result:
        """stat() of the path itself, not of what a final symlink points to."""
        return stat_result(self.requests.getattr(self._walk(path, follow=False)[0]).attr)

    def exists(self, path: PathLike) -> bool:
        try:
            self._resolve(path)
        except FileNotFoundError:
            return False
        return True

    def listdir(self, path: PathLike = "/") -> list[str]:
        nodeid = self._resolve(path)
        fh = self.requests.opendir(nodeid).fh
        names: list[str] = []
        try:
            offset = 0
            while entries := self.requests.readdir(nodeid, fh, offset):
                names += [os.fsdecode(e.name) for e in entries if e.name not in (b".", b"..")]
                offset = entries[-1].off
        finally:
            self.requests.releasedir(nodeid, fh)
        return names

    def mkdir(self, path: PathLike, mode: int = 0o755) -> None:
        _check_mode(mode)
        parent, name = self._parent(path)
        entry = self.requests.mkdir(parent, name, mode)
        self._count_lookup(entry)

    def rmdir(self, path: PathLike) -> None:
        parent, name = self._parent(path)
        self.requests.rmdir(parent, name)

    def unlink(self, path: PathLike) -> None:
        parent, name = self._parent(path)
        self.requests.unlink(parent, name)

    def rename(self, source: PathLike, destination: PathLike) -> None:
        parent, name = self._parent(source)
        newparent, newname = self._parent(destination)
        self.requests.rename(parent, name, newparent, newname)

    def symlink(self, target: PathLike, path: PathLike) -> None:
        """Create `path` as a symlink holding `target` (stored as given, never followed
        by the host)."""
        parent, name = self._parent(path)
        self._count_lookup(self.requests.symlink(parent, name, _encode(target)))

    def readlink(self, path: PathLike) -> str:
        return os.fsdecode(self.requests.readlink(self._walk(path, follow=False)[0]))

    def truncate(self, target: PathLike | Handle, size: int) -> None:
        check_offset(size, "size")
        if isinstance(target, Handle):
            self._check_open(target)
            if not target.writable:
                raise OSError(errno.EINVAL, "handle not open for writing")
            self.requests.setattr(target.nodeid, target.fh, size=size)
        else:
            self.requests.setattr(self._resolve(target), None, size=size)

    def read_file(self, path: PathLike) -> bytes:
        with self.open(path) as handle:
            return self.read(handle)

    def write_file(self, path: PathLike, data: bytes, mode: int = 0o644) -> None:
        with self.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode) as handle:
            self.write(handle, data)

    # -- handles -----------------------------------------------------------------------

    def open(self, path: PathLike, flags: int = os.O_RDONLY, mode: int = 0o644) -> Handle:
        """Open a regular file; O_CREAT (with O_EXCL) creates it, O_TRUNC empties it."""
        _check_mode(mode)
        if not 0 <= flags <= 0xFFFFFFFF:
            raise OSError(errno.EINVAL, "open flags out of range")
        if flags & os.O_CREAT:
            parent, name = self._parent(path)
            out = self.requests.create(parent, name, flags & ~os.O_CREAT, mode)
            self._count_lookup(out.entry)
            nodeid, fh = out.entry.nodeid, out.open.fh
        else:
            nodeid, mode = self._walk(path)
            if stat.S_ISDIR(mode):
                raise OSError(errno.EISDIR, "is a directory")
            fh = self.requests.open(nodeid, flags).fh
        self._use(nodeid, +1)
        return Handle(self, nodeid, fh, flags)

    def close(self, handle: Handle) -> None:
        self._check_open(handle)
        handle.closed = True
        handle._reader = safemem.no_reader()
        self._use(handle.nodeid, -1)
        try:
            if handle.writable:
                self.requests.flush(handle.nodeid, handle.fh)
        finally:
            self.requests.release(handle.nodeid, handle.fh)

    def read(self, handle: Handle, size: int = -1) -> bytes:
        """Read at the handle's position and advance it; size -1 reads to the end."""
        self._check_readable(handle)
        with handle._lock:
            if size < 0:
                size = max(0, self.data.size(handle.nodeid, handle.fh) - handle.position)
            data = self.data.pread(handle.nodeid, handle.fh, size, handle.position,
                                   handle._reader)
            handle.position += len(data)
            return data

    def write(self, handle: Handle, data: bytes) -> int:
        """Write at the handle's position (the end, for O_APPEND) and advance it."""
        self._check_writable(handle)
        with handle._lock:
            n = self.data.pwrite(handle.nodeid, handle.fh, data, handle.position,
                                 storable=handle.storable)
            if handle.flags & os.O_APPEND:
                handle.position = self.data.size(handle.nodeid, handle.fh)
            else:
                handle.position += n
            return n

    def pread(self, handle: Handle, size: int, offset: int) -> bytes:
        self._check_readable(handle)
        return self.data.pread(handle.nodeid, handle.fh, size, offset, handle._reader)

    def _pread(self, handle: Handle, size: int, offset: int) -> bytes:
        """pread's general path, when Handle.pread's fast read declined: not tried again."""
        self._check_readable(handle)
        return self.data.pread(handle.nodeid, handle.fh, size, offset, handle._reader,
                               fast=False)

    def pread_into(self, handle: Handle, buffer: bytearray | memoryview, offset: int) -> int:
        """Fill `buffer` from `offset`; return the count (short at the end of file).
        Through the window this is the one and only copy of the data."""
        self._check_readable(handle)
        return handle.pread_into(buffer, offset)

    def _pread_into(self, handle: Handle, buffer: bytearray | memoryview, offset: int) -> int:
        """pread_into's general path, when the fast read declined."""
        self._check_readable(handle)
        return self.data.pread_into(handle.nodeid, handle.fh, buffer, offset, handle._reader)

    def pwrite(self, handle: Handle, data: bytes, offset: int) -> int:
        self._check_writable(handle)
        return self.data.pwrite(handle.nodeid, handle.fh, data, offset,
                                storable=handle.storable)

    def seek(self, handle: Handle, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check_open(handle)
        with handle._lock:
            base = {os.SEEK_SET: 0, os.SEEK_CUR: handle.position}.get(whence)
            if base is None:
                if whence != os.SEEK_END:
                    raise OSError(errno.EINVAL, "bad whence")
                base = self.data.size(handle.nodeid, handle.fh)
            check_offset(base + offset, "position")
            handle.position = base + offset
            return handle.position

    def fsync(self, handle: Handle, datasync: bool = False) -> None:
        """DURABLE: what this guest wrote, by WRITE or by store, reaches stable storage."""
        self._check_open(handle)
        self.requests.fsync(handle.nodeid, handle.fh, datasync)

    def mmap(self, handle: Handle, offset: int, length: int, writable: bool = False) -> Mapping:
        """Map file bytes [offset, offset + length) through the DAX window (see
        mapping.Mapping). `offset` must be page aligned; a writable mapping needs a
        handle open for writing (EACCES otherwise, as mmap(2)). ENODEV when the
        back-end offers no DAX; ENOMEM when the window cannot hold it."""
        self._check_open(handle)
        if self.window is None:
            raise OSError(errno.ENODEV, "the back-end offers no DAX window")
        check_offset(offset)
        check_offset(offset + length, "mapping end")
        if length <= 0 or offset % PAGE_SIZE:
            raise OSError(errno.EINVAL, "empty or unaligned mapping")
        step = self.window.range_size
        if (offset + length + step - 1) // step - offset // step > len(self.window.ranges):
            raise OSError(errno.ENOMEM, "mapping larger than the DAX window")
        if not handle.readable or (writable and not handle.storable):
            raise OSError(errno.EACCES, "handle's access mode does not allow this mapping")
        nodeid = handle.nodeid
        self._use(nodeid, +1)  # the mapping refreshes the size by nodeid after a fault
        try:
            return Mapping(
                self.window, nodeid, handle.fh, offset, length, writable,
                refresh_size=lambda: self.data.size(nodeid),
                on_close=lambda: self._use(nodeid, -1),
            )
        except BaseException:
            self._use(nodeid, -1)
            raise

    def _check_open(self, handle: Handle) -> None:
        if handle.closed or handle.share is not self:
            raise OSError(errno.EBADF, "handle is closed or not of this share")

    def _check_readable(self, handle: Handle) -> None:
        self._check_open(handle)
        if not handle.readable:
            raise OSError(errno.EBADF, "handle not open for reading")

    def _check_writable(self, handle: Handle) -> None:
        self._check_open(handle)
        if not handle.writable:
            raise OSError(errno.EBADF, "handle not open for writing")
