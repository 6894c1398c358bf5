"""The passthrough filesystem: one host directory exported to guests, request by request.

One `PassthroughFS` per export; one `GuestSession` per connected guest. A session maps
its nodeids to O_PATH descriptors of host inodes (keyed by host identity (st_dev,
st_ino), so hard links share a nodeid) and its handles to open descriptors. Nodeids and
handles are counted up and never reused (NODEID, HANDLE). Attributes come from fstat at
every request, so host changes show at the guest's next request (COH-META); nothing is
cached that could go stale. Failures raise OSError with a POSIX errno; this layer knows
nothing of FUSE encodings or virtqueues.

Each call runs as the requesting guest user (the dispatcher switches the thread's
fsuid/fsgid around it, `credentials.py`), so the host kernel checks the export's
permissions, owns what is made, and clears set-id bits; this layer does no check of its
own on users.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from pagefs.impl.filesystem import DirEntry, Entry, MapGrant
from pagefs.impl.machine import MAX_FILE_OFFSET, PAGE_SIZE, whole_pages
from pagefs.impl.protocol import open_flags
from pagefs.impl.protocol.constants import FUSE_ROOT_ID
from pagefs.impl.transport import procfd
from pagefs.impl.transport.ranges import Mapped, WindowBook
from pagefs.impl.transport.ratelog import RateLog

from . import confine, syscalls, xattrs
from .sandbox import open_roots, reopen_read_only
from .tables import Export, Handle, Node, SessionTables

log = logging.getLogger("pagefs.host")
refusal_log = RateLog(log)
Params = ParamSpec("Params")
Result = TypeVar("Result")

_MAX_WINDOW_OFFSET = (1 << 64) - 1
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_FALLOC_KEEP_SIZE = 0x01
_FALLOC_PUNCH_HOLE = 0x02
_FALLOC_ZERO_RANGE = 0x10
_FALLOCATE_MODES = _FALLOC_KEEP_SIZE | _FALLOC_PUNCH_HOLE | _FALLOC_ZERO_RANGE


def _key(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _dtype(mode: int) -> int:
    return stat.S_IFMT(mode) >> 12


class PassthroughFS:
    """One exported host directory; `read_only` refuses every write path with EROFS."""

    def __init__(self, root: str, *, read_only: bool = False,
                 fds_per_guest: int | None = None, writable_map_fds: bool = False,
                 sandbox: str | None = "none") -> None:
        if not os.path.isdir("/proc/self/fd"):
            raise OSError(errno.ENOSYS, "pagefs-host needs /proc mounted")
        self.root = os.path.realpath(root)
        self.read_only = read_only
        # A VMM that maps every donated descriptor writable (QEMU 11.1) needs read-write
        # descriptors for read mappings too; never in a read-only export.
        self.writable_map_fds = writable_map_fds and not read_only
        # Each nodeid and handle a guest holds is a host descriptor; a cap keeps one guest
        # from exhausting the daemon's table and so starving the others.
        self.fds_per_guest = fds_per_guest
        # SANDBOX: the export as served, and a read-only view that donated read fds
        # come from (sandbox.py)
        self.roots = open_roots(self.root, sandbox, read_only=read_only)
        self._root_fd = self.roots.served
        # FUSE asks that (nodeid, generation) never repeats; nodeids are not reused
        # either, so an export-wide counter (in C, shared with the fast path) is enough.
        self.export = Export(read_only=read_only, fds_per_guest=fds_per_guest)
        self._guests = itertools.count(1)
        self._lock = threading.Lock()
        self._sessions: set[GuestSession] = set()

    def guest_name(self) -> str:
        """The next guest's name, "guest N", counted over the export's life."""
        return f"guest {next(self._guests)}"

    def session(self, name: str | None = None) -> GuestSession:
        """A new guest connected (named `name`, else the next guest_name()): it starts
        knowing only the root, nodeid 1."""
        with self._lock:
            session = GuestSession(self, os.dup(self._root_fd), name or self.guest_name())
            self._sessions.add(session)
        return session

    def next_generation(self) -> int:
        return self.export.next_generation()

    def _forget_session(self, session: GuestSession) -> None:
        with self._lock:
            self._sessions.discard(session)

    @property
    def sessions(self) -> int:
        """How many guests are connected."""
        with self._lock:
            return len(self._sessions)

    def close(self) -> None:
        """Release every guest's session, then the export root."""
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()
        if self._root_fd >= 0:
            self.roots.close()
            self._root_fd = -1

    def __enter__(self) -> PassthroughFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _note_refusal(guest: str, operation: str, err: OSError) -> None:
    """A refused request, logged once per (operation, errno) per interval with a count.
    A name that is not there is the answer to most of a real guest's LOOKUPs, and an
    attribute that is not there to the GETXATTR of security.capability a Linux guest sends
    before every write: debug."""
    name = errno.errorcode.get(err.errno or 0, str(err.errno))
    if (err.errno, operation) in ((errno.ENOENT, "lookup"), (errno.ENODATA, "getxattr")):
        log.debug("%s: %s refused: %s", guest, operation, name)
        return
    refusal_log.note(logging.INFO, f"{operation} {name}", "%s: %s refused: %s (%s)",
                     guest, operation, name, err.strerror)


def _serialized(method: Callable[Concatenate[GuestSession, Params], Result],
                ) -> Callable[Concatenate[GuestSession, Params], Result]:
    """One request at a time per guest: a descriptor in use is never closed under it.
    Refusals are logged rate-limited, by kind (`_note_refusal`), under the request's
    name (a READ's checks, `_hold_for_read`, as "read")."""
    operation = method.__name__.removeprefix("_hold_for_")

    @wraps(method)
    def run(self: GuestSession, *args: Params.args, **kwargs: Params.kwargs) -> Result:
        with self.tables.locked():
            try:
                if self._closed:
                    raise OSError(errno.ENOTCONN, "guest session closed")
                return method(self, *args, **kwargs)
            except OSError as err:
                _note_refusal(self.name, operation, err)
                raise

    return run


class GuestSession:
    """What one guest holds: nodeids with lookup counts, handles, window mappings."""

    def __init__(self, fs: PassthroughFS, root_fd: int, name: str) -> None:
        self.name = name
        self._fs = fs
        self._closed = False
        # nodeids and handles: C tables (tables.py), shared with the fast path
        self.tables = SessionTables(fs.export, root_fd)
        # a directory handle's listing, from the READDIR at offset 0 on
        self._listings: dict[int, list[DirEntry]] = {}
        # owner: (st_dev, st_ino); the book is the session's, in C (the fast path's too)
        self._window = WindowBook(self.tables.window_address)
        # The last mapping granted and what it replaced, until the front-end has it.
        self._last_added: tuple[Mapped, list[Mapped]] | None = None

    # -- bookkeeping ---------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return self._fs.read_only

    def _refuse_write(self) -> None:
        if self._fs.read_only:
            raise OSError(errno.EROFS, "read-only export")

    def _node(self, nodeid: int) -> Node:
        node = self.tables.node(nodeid)
        if node is None:
            raise OSError(errno.ESTALE, f"unknown nodeid {nodeid}")
        return node

    def _handle(self, fh: int, *, is_dir: bool | None = False) -> Handle:
        handle = self.tables.handle(fh)
        if handle is None or (is_dir is not None and handle.is_dir != is_dir):
            raise OSError(errno.EBADF, f"unknown handle {fh}")
        return handle

    def _reserve(self, fds: int) -> None:
        """EMFILE when `fds` more descriptors would take this guest past its cap."""
        limit = self._fs.fds_per_guest
        if limit is not None and self.tables.over_cap(fds):
            raise OSError(errno.EMFILE, f"guest holds {limit} host descriptors already")

    def _new_handle(self, fd: int, key: tuple[int, int], flags: int, is_dir: bool) -> int:
        """Record `fd`, opened on the inode known by `key` (from the node it was opened
        through, so no fstat is needed to learn it)."""
        return self.tables.add_handle(fd, key, flags, is_dir)

    def _enter(self, path_fd: int) -> Entry:
        """Count one lookup of the inode behind `path_fd` (which this call owns)."""
        st = os.fstat(path_fd)
        key = _key(st)
        nodeid = self.tables.nodeid_of(key)
        if nodeid is not None:
            os.close(path_fd)
            self.tables.looked_up(nodeid)
        else:
            try:
                self._reserve(1)
            except OSError:
                os.close(path_fd)
                raise
            try:
                nodeid = self.tables.add_node(path_fd, key, stat.S_IFMT(st.st_mode))
            except OSError:
                os.close(path_fd)
                raise
        node = self._node(nodeid)
        return Entry(nodeid, node.generation, st)

    def _dir_to_change(self, parent: int, name: bytes) -> Node:
        """The directory in which `name` is to be made or removed, after the checks every
        such request makes, in the same order: stale parent, read-only export, the name."""
        node = self._node(parent)
        self._refuse_write()
        confine.check_name(name)
        return node

    def _lookup_name(self, parent: int, name: bytes) -> Entry:
        node = self._node(parent)  # a stale parent is ESTALE whatever the name
        confine.check_name(name)
        return self._enter(confine.lookup_fd(node.fd, name))

    # -- namespace -------------------------------------------------------------

    @_serialized
    def lookup(self, parent: int, name: bytes) -> Entry:
        return self._lookup_name(parent, name)

    @_serialized
    def forget(self, nodeid: int, nlookup: int) -> None:
        """Drop `nlookup` lookups; at zero the nodeid is gone for good (never reissued)."""
        self.tables.forget(nodeid, nlookup)

    @_serialized
    def getattr(self, nodeid: int, fh: int | None = None) -> os.stat_result:
        node = self._node(nodeid)
        if fh is not None:
            handle = self._handle(fh, is_dir=None)
            if handle.key != node.key:
                raise OSError(errno.EBADF, f"handle {fh} is not open on nodeid {nodeid}")
            return os.fstat(handle.fd)
        return os.fstat(node.fd)

    @_serialized
    def setattr(self, nodeid: int, fh: int | None, *, size: int | None = None,
                mode: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None) -> os.stat_result:
        node = self._node(nodeid)
        self._refuse_write()
        handle = self._handle(fh, is_dir=None) if fh is not None else None
        if handle is not None and handle.key != node.key:
            # the handle must be one on this very inode, or a SETATTR of A truncates B
            raise OSError(errno.EBADF, f"handle {fh} is not open on nodeid {nodeid}")
        is_link = stat.S_ISLNK(node.kind)
        if is_link and (mode is not None or atime_ns is not None or mtime_ns is not None):
            raise OSError(errno.EOPNOTSUPP, "symlink attributes are not settable")
        path = confine.proc_path(node.fd)
        if mode is not None:
            os.chmod(path, stat.S_IMODE(mode))
        if size is not None:
            if size < 0:
                raise OSError(errno.EINVAL, "negative size")
            if handle is not None:
                os.ftruncate(handle.fd, size)
            elif stat.S_ISDIR(node.kind):
                raise OSError(errno.EISDIR, "truncate of a directory")
            elif not stat.S_ISREG(node.kind):
                raise OSError(errno.EINVAL, "truncate of a special file")
            else:
                os.truncate(path, size)
        if atime_ns is not None or mtime_ns is not None:
            syscalls.utimens(path, atime_ns, mtime_ns)
        return os.fstat(node.fd)

    @_serialized
    def readlink(self, nodeid: int) -> bytes:
        node = self._node(nodeid)
        if not stat.S_ISLNK(node.kind):
            raise OSError(errno.EINVAL, "not a symlink")
        return os.readlink(b"", dir_fd=node.fd)

    @_serialized
    def symlink(self, parent: int, name: bytes, target: bytes) -> Entry:
        node = self._dir_to_change(parent, name)
        confine.check_symlink_target(target)
        self._reserve(1)
        os.symlink(target, name, dir_fd=node.fd)
        return self._lookup_name(parent, name)

    @_serialized
    def mkdir(self, parent: int, name: bytes, mode: int) -> Entry:
        node = self._dir_to_change(parent, name)
        self._reserve(1)
        os.mkdir(name, stat.S_IMODE(mode), dir_fd=node.fd)
        return self._lookup_name(parent, name)

    @_serialized
    def unlink(self, parent: int, name: bytes) -> None:
        node = self._dir_to_change(parent, name)
        os.unlink(name, dir_fd=node.fd)

    @_serialized
    def rmdir(self, parent: int, name: bytes) -> None:
        node = self._dir_to_change(parent, name)
        os.rmdir(name, dir_fd=node.fd)

    @_serialized
    def rename(self, parent: int, name: bytes, newparent: int, newname: bytes,
               flags: int = 0) -> None:
        old_dir, new_dir = self._node(parent), self._node(newparent)
        self._refuse_write()
        confine.check_name(name)
        confine.check_name(newname)
        if flags & ~(_RENAME_NOREPLACE | _RENAME_EXCHANGE):
            raise OSError(errno.EINVAL, "unsupported rename flags")
        if flags:
            syscalls.renameat2(old_dir.fd, name, new_dir.fd, newname, flags)
        else:
            os.rename(name, newname, src_dir_fd=old_dir.fd, dst_dir_fd=new_dir.fd)

    # -- files -----------------------------------------------------------------

    def _check_open_flags(self, flags: int) -> None:
        if flags & os.O_ACCMODE == os.O_ACCMODE:
            raise OSError(errno.EINVAL, "invalid access mode")
        if self._fs.read_only and (open_flags.writable(flags) or flags & os.O_TRUNC):
            raise OSError(errno.EROFS, "read-only export")

    @_serialized
    def open(self, nodeid: int, flags: int) -> int:
        node = self._node(nodeid)
        if stat.S_ISDIR(node.kind):
            # A directory is OPENDIR's; a file handle on one would be a directory fd that
            # a later SETUPMAPPING could donate (ONLY-REGULAR).
            raise OSError(errno.EISDIR, "OPEN of a directory (OPENDIR lists it)")
        self._check_open_flags(flags)
        self._reserve(1)
        fd = confine.reopen(node.fd, flags, node.kind)
        return self._new_handle(fd, node.key, flags & confine.GUEST_OPEN_FLAGS, is_dir=False)

    @_serialized
    def create(self, parent: int, name: bytes, flags: int, mode: int) -> tuple[Entry, int]:
        """Create and open a regular file; an existing one is opened unless O_EXCL."""
        node = self._dir_to_change(parent, name)
        self._check_open_flags(flags)
        self._reserve(2)  # the new nodeid and the handle, checked before anything is made
        guest_flags = flags & confine.GUEST_OPEN_FLAGS
        try:
            # O_EXCL so that nothing but a fresh regular file is ever opened by O_CREAT.
            fd = confine.open_beneath(node.fd, name, guest_flags | os.O_CREAT | os.O_EXCL,
                                      stat.S_IMODE(mode))
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
            path_fd = confine.lookup_fd(node.fd, name)
            try:
                if stat.S_ISDIR(os.fstat(path_fd).st_mode):
                    raise OSError(errno.EISDIR, "create over a directory") from None
                fd = confine.reopen(path_fd, guest_flags)
            finally:
                os.close(path_fd)
        try:
            entry = self._enter(_path_fd_of(fd))
        except BaseException:
            os.close(fd)
            raise
        return entry, self._new_handle(fd, _key(entry.attr), guest_flags, is_dir=False)

    @_serialized
    def _hold_for_read(self, fh: int, offset: int, size: int) -> tuple[int, Any]:
        handle = self._handle(fh)
        if not handle.readable:
            raise OSError(errno.EBADF, "handle not open for reading")
        if offset < 0 or size < 0:
            raise OSError(errno.EINVAL, "negative offset or size")
        return handle.fd, self.tables.hold(fh)

    def read(self, fh: int, offset: int, size: int) -> bytes:
        fd, held = self._hold_for_read(fh, offset, size)
        with self._unlocked_io("read", held):
            return os.pread(fd, size, offset)

    @_serialized
    def _hold_for_write(self, fh: int, offset: int, length: int) -> tuple[int, Any]:
        handle = self._handle(fh)
        self._refuse_write()
        if not handle.writable:
            raise OSError(errno.EBADF, "handle not open for writing")
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset")
        if offset + length > MAX_FILE_OFFSET:
            raise OSError(errno.EFBIG, "write beyond the largest file offset")
        return handle.fd, self.tables.hold(fh)

    def write(self, fh: int, offset: int, data: bytes) -> int:
        fd, held = self._hold_for_write(fh, offset, len(data))
        with self._unlocked_io("write", held):
            return os.pwrite(fd, data, offset)

    @contextmanager
    def _unlocked_io(self, operation: str, held: Any) -> Iterator[None]:
        """A handle's READ or WRITE without the session's lock, as the C fast path does
        it: the handle held (checked under the lock first) keeps its fd open and its number
        unused whatever a RELEASE or a reset does meanwhile. Refusals logged as
        `_serialized` logs them."""
        try:
            yield
        except OSError as err:
            _note_refusal(self.name, operation, err)
            raise
        finally:
            self.tables.put(held)

    @_serialized
    def flush(self, fh: int) -> None:
        """DURABLE at close: what was written through a writable handle reaches disk."""
        handle = self._handle(fh)
        if handle.writable:
            os.fsync(handle.fd)

    @_serialized
    def fsync(self, fh: int, datasync: bool) -> None:
        """DURABLE: WRITEs and stores through any mapping of the file reach disk."""
        handle = self._handle(fh, is_dir=None)
        (os.fdatasync if datasync else os.fsync)(handle.fd)

    @_serialized
    def release(self, fh: int) -> None:
        self._handle(fh)
        self.tables.remove_handle(fh)

    # -- directories -----------------------------------------------------------

    @_serialized
    def opendir(self, nodeid: int) -> int:
        node = self._node(nodeid)
        if not stat.S_ISDIR(node.kind):
            raise OSError(errno.ENOTDIR, "not a directory")
        self._reserve(1)
        fd = confine.reopen(node.fd, os.O_RDONLY, node.kind)
        return self._new_handle(fd, node.key, os.O_RDONLY, is_dir=True)

    @_serialized
    def readdir(self, fh: int, offset: int) -> list[DirEntry]:
        """Entries after cookie `offset`; offset 0 rereads the directory (rewinddir)."""
        handle = self._handle(fh, is_dir=True)
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset")
        listing = self._listings.get(fh)
        if offset == 0 or listing is None:
            listing = self._dots(handle) + _list_directory(handle.fd, first_offset=3)
            self._listings[fh] = listing
        return listing[offset:]

    def _dots(self, handle: Handle) -> list[DirEntry]:
        """'.' and '..' as a Linux guest expects them from the server (it does not make them
        up). The export root's '..' is the root itself: nothing above it is shown."""
        here = os.fstat(handle.fd).st_ino
        if handle.key == self._node(FUSE_ROOT_ID).key:
            parent = here
        else:
            parent = os.stat("..", dir_fd=handle.fd, follow_symlinks=False).st_ino
        kind = _dtype(stat.S_IFDIR)
        return [DirEntry(here, 1, kind, b"."), DirEntry(parent, 2, kind, b"..")]

    @_serialized
    def releasedir(self, fh: int) -> None:
        self._handle(fh, is_dir=True)
        self.tables.remove_handle(fh)
        self._listings.pop(fh, None)

    @_serialized
    def statfs(self, nodeid: int) -> os.statvfs_result:
        return os.fstatvfs(self._node(nodeid).fd)

    # -- DAX window --------------------------------------------------------------

    @_serialized
    def setupmapping(self, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> MapGrant:
        """Check a mapping request and grant a fresh descriptor to donate (ACCESS-MODE).

        Read mappings and every mapping of a read-only export get an O_RDONLY descriptor,
        so the guest's window can never write the file whatever the guest does (RO-EXPORT);
        with `writable_map_fds` a read mapping in a writable export gets an O_RDWR one (the
        mapping's own flag keeps the guest's view read-only): a VMM could ask a writable
        mapping of the same file anyway, so nothing is given that was not on offer.
        Only a regular file is ever granted (ONLY-REGULAR): a directory's descriptor in a
        front-end's hands would name the whole host through openat(fd, "..").
        """
        handle = self._handle(fh, is_dir=None)
        if handle.is_dir:
            raise OSError(errno.ENODEV, "directories cannot be mapped")
        return self._grant(handle, foffset, length, writable, moffset)

    @_serialized
    def setupmapping_by_node(self, nodeid: int, foffset: int, length: int, writable: bool,
                             moffset: int) -> MapGrant:
        """A Linux guest maps by nodeid (FUSE_SETUPMAPPING_NO_FH): the same checks as
        through a handle opened in the mode asked for, with no handle left behind; the
        mapping outlives it (LIFETIME). Anything but a regular file is ENODEV before any
        descriptor is opened."""
        node = self._node(nodeid)
        if not stat.S_ISREG(node.kind):
            raise OSError(errno.ENODEV, "only regular files can be mapped")
        fh = self.open(nodeid, os.O_RDWR if writable else os.O_RDONLY)
        try:
            return self._grant(self._handle(fh), foffset, length, writable, moffset)
        finally:
            self.release(fh)

    def _grant(self, handle: Handle, foffset: int, length: int, writable: bool,
               moffset: int) -> MapGrant:
        if writable:
            self._refuse_write()
        if not handle.readable:
            raise OSError(errno.EACCES, "handle not open for reading")
        if writable and (not handle.writable or handle.flags & os.O_APPEND):
            raise OSError(errno.EACCES, "handle not open for writing")
        if not (whole_pages(foffset, length) and whole_pages(moffset, length)):
            raise OSError(errno.EINVAL, f"range empty, negative or not in whole {PAGE_SIZE}-"
                                        "byte pages")
        if foffset + length > MAX_FILE_OFFSET:
            raise OSError(errno.EOVERFLOW, "file range beyond the largest offset")
        if moffset + length > _MAX_WINDOW_OFFSET:
            raise OSError(errno.EINVAL, "window range overflows")
        if writable or self._fs.writable_map_fds:
            fd = procfd.reopen(handle.fd, os.O_RDWR)
        else:  # from the read-only view: a front-end cannot reopen it for writing
            fd = reopen_read_only(handle.fd, self._fs.roots)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # what crosses, checked on itself
                raise OSError(errno.ENODEV, "only regular files can be mapped")
            added = Mapped(moffset, length, handle.key, foffset, writable)
            touched = self._window.add(added)
            self._last_added = (added, touched)
        except BaseException:
            os.close(fd)
            raise
        return MapGrant(fd, foffset, length, writable, tuple(
            (t.moffset, t.length) for t in touched if moffset <= t.moffset and t.end <= added.end))

    @_serialized
    def cancel_mapping(self, moffset: int) -> None:
        """The front-end refused the mapping just granted at `moffset`: the record goes
        back to what it was, the mappings that one overlapped included (MAP-BOOKS)."""
        if self._last_added is None or self._last_added[0].moffset != moffset:
            raise OSError(errno.EINVAL, "no mapping granted at that offset to cancel")
        added, touched = self._last_added
        self._last_added = None
        self._window.undo(added, touched)

    def map_sources(self) -> tuple[int, bool]:
        """Where `_grant` takes a donated descriptor from, for the C fast path: the
        read-only view's root fd (-1: the export's own mount) and writable_map_fds."""
        roots = self._fs.roots
        return (-1 if roots.read_only == roots.served else roots.read_only,
                self._fs.writable_map_fds)

    def window_locked(self) -> AbstractContextManager[None]:
        return self.tables.window_locked()

    @_serialized
    def removemapping(self, moffset: int, length: int) -> None:
        if not whole_pages(moffset, length):
            raise OSError(errno.EINVAL, "empty, negative or unaligned range")
        self._window.remove(moffset, moffset + length)

    @property
    def mappings(self) -> list[Mapped]:
        """The window ranges this guest has mapped, in window order."""
        with self.tables.locked():
            return list(self._window)

    # -- links, special files, extended attributes, space ------------------------

    @_serialized
    def link(self, nodeid: int, parent: int, name: bytes) -> Entry:
        """A new name for the inode behind `nodeid` (never a directory: EPERM, as POSIX)."""
        directory = self._dir_to_change(parent, name)
        node = self._node(nodeid)
        if stat.S_ISDIR(node.kind):
            raise OSError(errno.EPERM, "hard links to directories are not allowed")
        # The inode by its descriptor, never by a name that could have moved: the /proc
        # link names the pinned inode itself (a symlink's too, not its target).
        os.link(confine.proc_path(node.fd), name, dst_dir_fd=directory.fd)
        return self._lookup_name(parent, name)

    @_serialized
    def mknod(self, parent: int, name: bytes, mode: int, rdev: int) -> Entry:
        """A FIFO, a socket or an empty regular file. Device nodes are refused (EPERM): one
        made by a guest would be a door to a host device for anyone on the host who can
        reach the export, whatever the guest's own kernel allows."""
        directory = self._dir_to_change(parent, name)
        kind = stat.S_IFMT(mode) or stat.S_IFREG
        if kind in (stat.S_IFCHR, stat.S_IFBLK):
            raise OSError(errno.EPERM, "device nodes are not made for guests")
        if kind not in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFREG):
            raise OSError(errno.EINVAL, f"mknod of file type {kind:#o}")
        self._reserve(1)
        os.mknod(name, kind | stat.S_IMODE(mode), 0, dir_fd=directory.fd)
        return self._lookup_name(parent, name)

    def _xattr_target(self, node: Node) -> str | None:
        """The path the xattr calls take to the pinned inode (they never open it); None for
        a symlink, whose user.* attributes Linux refuses anyway."""
        return None if stat.S_ISLNK(node.kind) else confine.proc_path(node.fd)

    @_serialized
    def setxattr(self, nodeid: int, name: bytes, value: bytes, flags: int) -> None:
        node = self._node(nodeid)
        self._refuse_write()
        xattrs.check_change(name, value, flags)
        path = self._xattr_target(node)
        if path is None:
            raise OSError(errno.EPERM, "no user.* attributes on symlinks")
        os.setxattr(path, name, value, flags)

    @_serialized
    def getxattr(self, nodeid: int, name: bytes, size: int) -> bytes | int:
        """The value, or its length when `size` is 0 (xattrs.fitted)."""
        node = self._node(nodeid)
        xattrs.check_name(name)
        path = self._xattr_target(node)
        if path is None or not xattrs.visible(name):
            raise OSError(errno.ENODATA, "no such attribute")
        return xattrs.fitted(os.getxattr(path, name), size)

    @_serialized
    def listxattr(self, nodeid: int, size: int) -> bytes | int:
        """The visible names, NUL-terminated, or their length when `size` is 0."""
        path = self._xattr_target(self._node(nodeid))
        names = os.listxattr(path) if path is not None else []
        return xattrs.fitted(xattrs.names_list(names), size)

    @_serialized
    def removexattr(self, nodeid: int, name: bytes) -> None:
        node = self._node(nodeid)
        self._refuse_write()
        xattrs.check_change(name)
        path = self._xattr_target(node)
        if path is None:
            raise OSError(errno.EPERM, "no user.* attributes on symlinks")
        os.removexattr(path, name)

    @_serialized
    def fallocate(self, fh: int, offset: int, length: int, mode: int) -> None:
        """Reserve (mode 0 or KEEP_SIZE), punch a hole (PUNCH_HOLE|KEEP_SIZE) or zero a range
        (ZERO_RANGE, optionally KEEP_SIZE) of an open file: the modes Linux's FUSE sends."""
        handle = self._handle(fh)
        self._refuse_write()
        if not handle.writable:
            raise OSError(errno.EBADF, "handle not open for writing")
        if mode & ~_FALLOCATE_MODES or (mode & _FALLOC_PUNCH_HOLE
                                        and not mode & _FALLOC_KEEP_SIZE):
            raise OSError(errno.EOPNOTSUPP, f"fallocate mode {mode:#x}")
        if offset < 0 or length <= 0:
            raise OSError(errno.EINVAL, "negative offset or empty length")
        if offset + length > MAX_FILE_OFFSET:
            raise OSError(errno.EFBIG, "range beyond the largest file offset")
        syscalls.fallocate(handle.fd, mode, offset, length)

    @_serialized
    def syncfs(self, nodeid: int) -> None:
        """Write back the filesystem that holds the export (not a write: served read-only too)."""
        self._node(nodeid)  # the guest's kernel names its root; any live nodeid will do
        fd = confine.reopen(self._node(FUSE_ROOT_ID).fd, os.O_RDONLY, stat.S_IFDIR)
        try:
            syscalls.syncfs(fd)
        finally:
            os.close(fd)

    # -- lifetime ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """RECLAIM: release every nodeid, handle and mapping record this guest held."""
        with self.tables.locked():
            if self._closed:
                return
            self._closed = True
            self._release_all(keep_root=False)
        self._fs._forget_session(self)

    def reset(self) -> dict[str, int]:
        """A new FUSE session on the same connection (a guest reset without unmount, or
        DESTROY): everything the old session held is released, as at a disconnect, and
        the guest starts again knowing only the root. Nodeids and handles keep counting,
        so the old session's numbers stay unknown (ESTALE, EBADF) for good. Returns what
        was released. The caller unmaps the window's mappings from the front-end first."""
        with self.tables.locked():
            released = self.stats()
            self._release_all(keep_root=True)
        released["nodes"] -= 1  # the root is the new session's too
        return released

    def _release_all(self, *, keep_root: bool) -> None:
        """Close the descriptor of every handle and nodeid held (the root's too unless
        `keep_root`, whose lookup count goes back to 1), and forget the window's mappings
        (the lock held)."""
        self.tables.release_all(keep_root=keep_root)
        self._listings.clear()
        self._window.clear()

    def stats(self) -> dict[str, int]:
        """Counts of what this guest holds (for logs and tests)."""
        with self.tables.locked():
            nodes, handles = self.tables.counts()
            return {"nodes": nodes, "handles": handles, "mappings": len(self._window)}


def _path_fd_of(fd: int) -> int:
    """An O_PATH descriptor for the inode behind an open descriptor (no name involved)."""
    return procfd.reopen(fd, os.O_PATH)


def _list_directory(fd: int, first_offset: int = 1) -> list[DirEntry]:
    """A snapshot of a directory's entries, '.' and '..' left out (getdents' '..' of the
    export root is above it); cookies count from `first_offset`."""
    entries: list[DirEntry] = []
    with os.scandir(fd) as it:
        for item in it:
            try:
                kind = _entry_type(item)
            except FileNotFoundError:
                continue  # removed by the host while listing
            entries.append(DirEntry(item.inode(), len(entries) + first_offset, kind,
                                    os.fsencode(item.name)))
    return entries


def _entry_type(item: os.DirEntry) -> int:
    """DT_* of an entry: from getdents' d_type for the common kinds (no syscall), from
    fstatat (never following a symlink, never opening) for the rest."""
    if item.is_symlink():
        return stat.S_IFLNK >> 12
    if item.is_dir(follow_symlinks=False):
        return stat.S_IFDIR >> 12
    if item.is_file(follow_symlinks=False):
        return stat.S_IFREG >> 12
    return _dtype(item.stat(follow_symlinks=False).st_mode)

