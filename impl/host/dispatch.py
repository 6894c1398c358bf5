"""Request dispatch: one FUSE request's bytes in, its reply's bytes out.

`Dispatcher(session, mapper).handle(request)` decodes the request with `impl.protocol`,
calls the guest's `GuestSession` (docs/ARCHITECTURE.md), and encodes the reply or the
errno; what a caching guest may keep is the `CachePolicy`'s (`--cache`). It knows nothing
of virtqueues. DAX mappings are granted by the session and then donated to the front-end
through `mapper` (the vhost-user back-end's SHMEM_MAP/_UNMAP).

Nothing escapes `handle`: a filesystem failure becomes its errno, a malformed request
EINVAL (or ENOSYS for an opcode we do not serve), and anything unexpected EIO with a log
line. FORGET, BATCH_FORGET and INTERRUPT get no reply at all (None).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pagefs.impl import protocol as p
from pagefs.impl.filesystem import Entry, FilesystemSession
from pagefs.impl.machine import PAGE_SHIFT, PAGE_SIZE
from pagefs.impl.protocol import constants as c
from pagefs.impl.protocol.codec import ERRNO_LIMIT
from pagefs.impl.protocol.constants import MAX_TRANSFER
from pagefs.impl.transport.ratelog import RateLog

from . import cache_policy, limits
from .cache_policy import CachePolicy
from .credentials import Credentials

log = logging.getLogger("pagefs.host")
# What a guest causes is logged at most once per kind per interval, with a count.
guest_log = RateLog(log)

# map_alignment: foffset and moffset need only be page aligned (log2 of the page size).
MAP_ALIGNMENT = PAGE_SHIFT
_NSEC = 1_000_000_000
_U32 = 0xFFFF_FFFF
_U64 = (1 << 64) - 1

Body = TypeVar("Body")


@dataclass(frozen=True)
class Route(Generic[Body]):
    """How one opcode is served: the request layout it takes, and `serve(unique, nodeid,
    body)`, which answers with the whole reply (None for the requests that take none)."""

    layout: type[Body]
    serve: Callable[[int, int, Body], bytes | None]

    def __call__(self, unique: int, nodeid: int, body: p.RequestBody) -> bytes | None:
        if not isinstance(body, self.layout):  # the codec and this table disagree: a bug
            raise TypeError(f"{type(body).__name__} where {self.layout.__name__} belongs")
        return self.serve(unique, nodeid, body)


class Mapper(Protocol):
    """The front-end's DAX window as the back-end reaches it (VHOST_USER_BACKEND_SHMEM_*).

    Both raise OSError when the front-end refuses.
    """

    def shmem_map(
        self, fd: int, fd_offset: int, shm_offset: int, length: int, writable: bool
    ) -> None: ...

    def shmem_unmap(self, ranges: list[tuple[int, int]]) -> None:
        """Every (shm_offset, length) range is asked for, whatever the answers (pipelined
        on the wire); raises for the first refused."""


class Dispatcher:
    """Serves one guest's requests against its session; one per connection."""

    def __init__(self, session: FilesystemSession, mapper: Mapper,
                 cache: CachePolicy = cache_policy.DEFAULT,
                 credentials: Credentials | None = None) -> None:
        self.session = session
        self.mapper = mapper
        self.cache = cache
        self.credentials = credentials or Credentials()
        # FUSE_HANDLE_KILLPRIV_V2 negotiated: requests may ask for set-id bits killed
        self._killpriv = False
        entry_reply = self._entry_reply
        # Told of every change of `initialized` (the C fast path keeps its own copy).
        self.gates: list[Callable[[bool], None]] = []
        self._initialized = False
        # The guest has completed FUSE INIT once on this connection; requests before INIT
        # are EIO and do not count.
        self.greeted = False
        self._unsupported_logged: set[int] = set()
        # Requests arrive on several queues at once; the session's record of the window and
        # the front-end's window must change together, one mapping request at a time (the
        # C fast path's too: the session's window lock).
        self._window_lock = session.window_locked
        # Each handler answers (unique, nodeid, body) with the whole reply's bytes. Most build
        # the typed reply body (`_typed`); the frequent attribute and entry replies are
        # packed straight from the host's stat, with no dataclass on the way.
        self.routes: dict[int, Route[Any]] = {
            c.Opcode.INIT: _typed(p.InitIn, self._init),
            c.Opcode.DESTROY: _typed(p.Empty, self._destroy),
            c.Opcode.LOOKUP: Route(p.Name, lambda u, n, b: entry_reply(
                u, session.lookup(n, b.name))),
            c.Opcode.FORGET: Route(p.ForgetIn, self._forget),
            c.Opcode.BATCH_FORGET: Route(p.BatchForgetIn, self._batch_forget),
            # requests are served to the end, one by one: nothing to interrupt
            c.Opcode.INTERRUPT: Route(p.InterruptIn, lambda u, n, b: None),
            c.Opcode.GETATTR: Route(p.GetattrIn, self._getattr),
            c.Opcode.SETATTR: Route(p.SetattrIn, self._setattr),
            c.Opcode.READLINK: _typed(p.Empty, lambda n, b: p.Data(session.readlink(n))),
            c.Opcode.SYMLINK: Route(p.SymlinkIn, lambda u, n, b: entry_reply(
                u, session.symlink(n, b.name, b.target))),
            c.Opcode.MKDIR: Route(p.MkdirIn, lambda u, n, b: entry_reply(
                u, session.mkdir(n, b.name, b.mode))),
            c.Opcode.UNLINK: _done(p.Name, lambda n, b: session.unlink(n, b.name)),
            c.Opcode.RMDIR: _done(p.Name, lambda n, b: session.rmdir(n, b.name)),
            c.Opcode.RENAME: _typed(p.RenameIn, self._rename),
            c.Opcode.RENAME2: _typed(p.Rename2In, self._rename),
            c.Opcode.OPEN: _typed(p.OpenIn, lambda n, b: p.OpenOut(
                session.open(n, b.flags), cache.open_flags)),
            c.Opcode.CREATE: _typed(p.CreateIn, self._create),
            c.Opcode.READ: _typed(p.ReadIn, self._read),
            c.Opcode.WRITE: _typed(p.WriteIn, lambda n, b: p.WriteOut(
                session.write(b.fh, b.offset, b.data))),
            c.Opcode.STATFS: _typed(p.Empty, lambda n, b: _statfs(session.statfs(n))),
            c.Opcode.FLUSH: _done(p.FlushIn, lambda n, b: session.flush(b.fh)),
            c.Opcode.FSYNC: _done(p.FsyncIn, lambda n, b: session.fsync(
                b.fh, bool(b.fsync_flags & c.FUSE_FSYNC_FDATASYNC))),
            c.Opcode.RELEASE: _typed(p.ReleaseIn, self._release),
            c.Opcode.OPENDIR: _typed(p.OpenIn, lambda n, b: p.OpenOut(session.opendir(n))),
            c.Opcode.READDIR: _typed(p.ReadIn, self._readdir),
            c.Opcode.RELEASEDIR: _done(p.ReleaseIn, lambda n, b: session.releasedir(b.fh)),
            c.Opcode.SETUPMAPPING: _typed(p.SetupmappingIn, self._setupmapping),
            c.Opcode.REMOVEMAPPING: _typed(p.RemovemappingIn, self._removemapping),
            c.Opcode.LINK: Route(p.LinkIn, lambda u, n, b: entry_reply(
                u, session.link(b.oldnodeid, n, b.name))),
            c.Opcode.MKNOD: Route(p.MknodIn, lambda u, n, b: entry_reply(
                u, session.mknod(n, b.name, b.mode, b.rdev))),
            c.Opcode.SETXATTR: _done(p.SetxattrIn, lambda n, b: session.setxattr(
                n, b.name, b.value, b.flags)),
            c.Opcode.GETXATTR: _typed(p.GetxattrIn, lambda n, b: _sized(
                session.getxattr(n, b.name, b.size))),
            c.Opcode.LISTXATTR: _typed(p.ListxattrIn, lambda n, b: _sized(
                session.listxattr(n, b.size))),
            c.Opcode.REMOVEXATTR: _done(p.Name, lambda n, b: session.removexattr(n, b.name)),
            c.Opcode.FALLOCATE: _done(p.FallocateIn, lambda n, b: session.fallocate(
                b.fh, b.offset, b.length, b.mode)),
            c.Opcode.SYNCFS: _done(p.SyncfsIn, lambda n, b: session.syncfs(n)),
        }

    @property
    def initialized(self) -> bool:
        """FUSE INIT is done: requests other than INIT are served."""
        return self._initialized

    @initialized.setter
    def initialized(self, value: bool) -> None:
        self._initialized = value
        for gate in self.gates:
            gate(value)

    # -- the one entry point -------------------------------------------------------

    def handle(self, request: bytes) -> bytes | None:
        """The reply to one request, or None when the request takes no reply."""
        try:
            opcode, unique, nodeid, body, uid, gid, _pid = p.decode_request_values(request)
        except p.ProtocolError as err:
            return self._refuse_malformed(err)
        except Exception:
            guest_log.note(logging.ERROR, "request decoder failed",
                           "%s: request decoder failed", self._name, exc_info=True)
            return None
        if not p.expects_reply(opcode):
            self._serve_quietly(opcode, nodeid, body)
            return None
        try:
            return self._serve(opcode, unique, nodeid, body, uid, gid)
        except OSError as err:
            return p.encode_error(unique, _errno_of(err))
        except OverflowError as err:  # a wire integer LIMITS did not foresee: still an errno
            guest_log.note(logging.WARNING, "value out of range",
                           "%s: %s refused (EOVERFLOW): %s", self._name, opcode.name, err)
            return p.encode_error(unique, errno.EOVERFLOW)
        except Exception:
            guest_log.note(logging.ERROR, f"{opcode.name} failed", "%s: %s failed",
                           self._name, opcode.name, exc_info=True)
            return p.encode_error(unique, errno.EIO)

    def _serve(self, opcode: c.Opcode, unique: int, nodeid: int,
               body: p.RequestBody, uid: int, gid: int) -> bytes | None:
        """Every request, whatever its opcode, passes here: the INIT gate and the wire
        integers' ranges (LIMITS) are checked before its handler runs, and the handler
        runs as the header's user (CREDENTIALS) with its umask applied."""
        if not self.initialized and opcode != c.Opcode.INIT:
            guest_log.note(logging.INFO, "request before INIT",
                           "%s: %s before INIT refused (EIO)", self._name, opcode.name)
            raise OSError(errno.EIO, "request before INIT")
        limits.check(opcode, body)
        handler = self.routes.get(opcode)
        if handler is None:
            self._note_unsupported(opcode)
            raise OSError(errno.ENOSYS, f"{opcode.name} not served")
        if opcode in _AS_DAEMON:
            return handler(unique, nodeid, body)
        with self.credentials.acting_as(uid, gid, kill_suidgid=self._kills_suidgid(body)):
            return handler(unique, nodeid, _umasked(body))

    def _serve_quietly(self, opcode: c.Opcode, nodeid: int, body: p.RequestBody) -> None:
        """FORGET-like requests: the guest waits for nothing, so failures are only logged."""
        if not self.initialized:
            return
        try:
            self.routes[opcode](0, nodeid, body)
        except OSError:
            pass  # the guest waits for no answer
        except Exception:
            guest_log.note(logging.ERROR, f"{opcode.name} failed", "%s: %s failed",
                           self._name, opcode.name, exc_info=True)

    def _kills_suidgid(self, body: p.RequestBody) -> bool:
        """The guest asks this request to clear set-uid/set-gid as the kernel would for an
        unprivileged writer (FUSE_HANDLE_KILLPRIV_V2)."""
        if not self._killpriv:
            return False
        if isinstance(body, p.WriteIn):
            return bool(body.write_flags & c.FUSE_WRITE_KILL_SUIDGID)
        if isinstance(body, p.SetattrIn):
            return bool(body.valid & c.SetattrValid.KILL_SUIDGID)
        if isinstance(body, (p.OpenIn, p.CreateIn)):
            return bool(body.open_flags & c.FUSE_OPEN_KILL_SUIDGID)
        return False

    def _refuse_malformed(self, err: p.ProtocolError) -> bytes | None:
        if err.errno == errno.ENOSYS and err.opcode is not None:
            self._note_unsupported(err.opcode)
        else:
            guest_log.note(logging.INFO, "malformed request",
                           "%s: malformed request refused: %s", self._name, err)
        if err.unique is None or err.opcode is None or not p.expects_reply(err.opcode):
            return None
        return p.encode_error(err.unique, err.errno)

    def _note_unsupported(self, opcode: int) -> None:
        if opcode not in self._unsupported_logged:
            self._unsupported_logged.add(opcode)
            log.info("%s: opcode %d is not served (ENOSYS)", self._name, opcode)

    @property
    def _name(self) -> str:
        return getattr(self.session, "name", "guest")

    # -- session set-up ------------------------------------------------------------

    def _init(self, nodeid: int, offer: p.InitIn) -> p.InitOut:
        """Version and capability negotiation (the rules at the top of fuse.h). An INIT on
        a live session is a guest that was reset without unmounting: a new session."""
        if self.initialized:
            self._new_session("INIT on a live session (guest reset)")
        if offer.major > c.FUSE_KERNEL_VERSION:
            # Answer with our major only; the guest then sends a new INIT in our major.
            return p.InitOut(c.FUSE_KERNEL_VERSION, c.FUSE_KERNEL_MINOR_VERSION)
        if offer.major < c.FUSE_KERNEL_VERSION or offer.minor < c.FUSE_MIN_MINOR_VERSION:
            log.info("%s: INIT %d.%d refused: we need %d.%d or later", self._name, offer.major,
                     offer.minor, c.FUSE_KERNEL_VERSION, c.FUSE_MIN_MINOR_VERSION)
            raise OSError(errno.EPROTO, "protocol version too old")
        wanted = (c.InitFlag.BIG_WRITES | c.InitFlag.MAX_PAGES | c.InitFlag.MAP_ALIGNMENT
                  | c.InitFlag.HANDLE_KILLPRIV_V2 | self.cache.init_flags)
        flags = offer.flags & wanted
        self._killpriv = bool(flags & c.InitFlag.HANDLE_KILLPRIV_V2)
        dax = bool(flags & c.InitFlag.MAP_ALIGNMENT)
        self.initialized = self.greeted = True
        return p.InitOut(
            major=c.FUSE_KERNEL_VERSION,
            minor=min(offer.minor, c.FUSE_KERNEL_MINOR_VERSION),
            max_readahead=offer.max_readahead,
            flags=flags,
            max_write=MAX_TRANSFER,
            time_gran=1,
            max_pages=MAX_TRANSFER // PAGE_SIZE,
            map_alignment=MAP_ALIGNMENT if dax else 0,
        )

    def _destroy(self, nodeid: int, body: p.Empty) -> p.Empty:
        """The guest unmounted; it may INIT again on this connection."""
        self._new_session("DESTROY")
        return p.EMPTY

    def _new_session(self, why: str) -> None:
        """Releases everything the session held (RECLAIM, without a disconnect): its window
        mappings are taken out of the front-end's window first, then its handles and
        nodeids. Until the next INIT every request is refused."""
        with self._window_lock():
            self.initialized = False
            try:
                self.mapper.shmem_unmap([(m.moffset, m.length) for m in self.session.mappings])
            except OSError as err:  # a front-end that reset its window already
                log.debug("%s: unmap of the window at reset: %s", self._name, err)
            released = self.session.reset()
        log.info("%s: new FUSE session after %s; released %d nodeids, %d handles, "
                 "%d mappings", self._name, why, released["nodes"], released["handles"],
                 released["mappings"])

    def _forget(self, unique: int, nodeid: int, body: p.ForgetIn) -> None:
        self.session.forget(nodeid, body.nlookup)

    def _batch_forget(self, unique: int, nodeid: int, body: p.BatchForgetIn) -> None:
        for one in body.entries:
            try:
                self.session.forget(one.nodeid, one.nlookup)
            except OSError:
                pass  # one stale nodeid must not keep the others alive

    # -- attributes ----------------------------------------------------------------

    def _getattr(self, unique: int, nodeid: int, body: p.GetattrIn) -> bytes:
        fh = body.fh if body.getattr_flags & c.FUSE_GETATTR_FH else None
        st = self.session.getattr(nodeid, fh)
        return p.encode_attr_reply(unique, attr_values(st), self.cache.attr_timeout)

    def _setattr(self, unique: int, nodeid: int, body: p.SetattrIn) -> bytes:
        valid = c.SetattrValid(body.valid)
        if valid & (c.SetattrValid.UID | c.SetattrValid.GID):
            # Owners are the host's; a chown that changes nothing (tar and cp -p as root
            # set every owner they extract) is no change, so it is not refused.
            now_st = self.session.getattr(nodeid, body.fh if valid & c.SetattrValid.FH else None)
            if (valid & c.SetattrValid.UID and body.uid != now_st.st_uid) or \
                    (valid & c.SetattrValid.GID and body.gid != now_st.st_gid):
                raise OSError(errno.EPERM, "owner changes are not served")
        now = time.time_ns()
        st = self.session.setattr(
            nodeid,
            body.fh if valid & c.SetattrValid.FH else None,
            size=body.size if valid & c.SetattrValid.SIZE else None,
            mode=stat.S_IMODE(body.mode) if valid & c.SetattrValid.MODE else None,
            atime_ns=_time_ns(valid, c.SetattrValid.ATIME, c.SetattrValid.ATIME_NOW,
                              body.atime, body.atimensec, now),
            mtime_ns=_time_ns(valid, c.SetattrValid.MTIME, c.SetattrValid.MTIME_NOW,
                              body.mtime, body.mtimensec, now),
        )  # fmt: skip
        return p.encode_attr_reply(unique, attr_values(st), self.cache.attr_timeout)

    # -- names -----------------------------------------------------------------------

    def _rename(self, nodeid: int, body: p.RenameIn | p.Rename2In) -> p.Empty:
        flags = body.flags if isinstance(body, p.Rename2In) else 0
        self.session.rename(nodeid, body.oldname, body.newdir, body.newname, flags)
        return p.EMPTY

    def _create(self, nodeid: int, body: p.CreateIn) -> p.CreateOut:
        entry, fh = self.session.create(nodeid, body.name, body.flags, body.mode)
        out = p.EntryOut(entry.nodeid, entry.generation, attr_from_stat(entry.attr),
                         self.cache.entry_timeout, self.cache.attr_timeout)
        return p.CreateOut(out, p.OpenOut(fh, self.cache.open_flags))

    def _entry_reply(self, unique: int, entry: Entry) -> bytes:
        return p.encode_entry_reply(unique, entry.nodeid, entry.generation,
                                    attr_values(entry.attr), self.cache.entry_timeout,
                                    self.cache.attr_timeout)

    # -- data --------------------------------------------------------------------------

    def _read(self, nodeid: int, body: p.ReadIn) -> p.Data:
        _check_transfer(body.size)
        return p.Data(self.session.read(body.fh, body.offset, body.size))

    def _release(self, nodeid: int, body: p.ReleaseIn) -> p.Empty:
        try:
            if body.release_flags & c.FUSE_RELEASE_FLUSH:
                self.session.flush(body.fh)
        finally:
            self.session.release(body.fh)
        return p.EMPTY

    def _readdir(self, nodeid: int, body: p.ReadIn) -> p.Dirents:
        """As many entries after `offset` as fit in the guest's buffer."""
        _check_transfer(body.size)
        room = body.size
        entries = []
        for entry in self.session.readdir(body.fh, body.offset):
            size = p.dirent_size(len(entry.name))
            if size > room:
                break
            room -= size
            entries.append(p.Dirent(entry.ino, entry.offset, entry.type, entry.name))
        else:
            return p.Dirents(tuple(entries))
        if not entries:
            raise OSError(errno.EINVAL, f"READDIR buffer of {body.size} bytes holds no entry")
        return p.Dirents(tuple(entries))

    # -- DAX window ----------------------------------------------------------------------

    def _setupmapping(self, nodeid: int, body: p.SetupmappingIn) -> p.Empty:
        with self._window_lock():
            if body.fh != c.FUSE_SETUPMAPPING_NO_FH:
                grant = self.session.setupmapping(
                    body.fh, body.foffset, body.length, body.writable, body.moffset
                )
            else:
                grant = self.session.setupmapping_by_node(
                    nodeid, body.foffset, body.length, body.writable, body.moffset
                )
            unmapped: list[tuple[int, int]] = []
            try:
                if grant.replaces:  # a remap: read-only to writable
                    unmapped.extend(grant.replaces)
                    self.mapper.shmem_unmap(list(grant.replaces))
                self.mapper.shmem_map(
                    grant.fd, grant.fd_offset, body.moffset, grant.length, grant.writable
                )
            except BaseException:
                # The front-end did not map it, so the host must not believe it is mapped;
                # nor the mappings it replaced that were already taken out of the window.
                self.session.cancel_mapping(body.moffset)
                for moffset, length in unmapped:
                    self.session.removemapping(moffset, length)
                raise
            finally:
                os.close(grant.fd)
        return p.EMPTY

    def _removemapping(self, nodeid: int, body: p.RemovemappingIn) -> p.Empty:
        with self._window_lock():
            removed: list[tuple[int, int]] = []
            refused: OSError | None = None
            for one in body.entries:  # out of the book, up to the first it refuses
                try:
                    self.session.removemapping(one.moffset, one.length)
                except OSError as err:
                    refused = err
                    break
                removed.append((one.moffset, one.length))
            self.mapper.shmem_unmap(removed)  # then out of the window, in one go
            if refused is not None:
                raise refused
        return p.EMPTY


# Session set-up and teardown act as the daemon, whoever the header names.
_AS_DAEMON = frozenset({c.Opcode.INIT, c.Opcode.DESTROY})


def _umasked(body: p.RequestBody) -> p.RequestBody:
    """A request that makes a node (CREATE, MKDIR, MKNOD, ...) with the permission bits
    its `umask` removes taken out of `mode` (a no-op where the guest kernel already did)."""
    umask = getattr(body, "umask", 0) & 0o777
    mode = getattr(body, "mode", None)
    if not umask or mode is None:
        return body
    masked: p.RequestBody = dataclasses.replace(body, mode=mode & ~umask)
    return masked


def attr_values(st: os.stat_result) -> tuple[int, ...]:
    """fuse_attr's fields from a host stat, in Attr's order: times split into seconds
    (two's complement) and ns; flags 0."""
    atime, atimensec = divmod(st.st_atime_ns, _NSEC)
    mtime, mtimensec = divmod(st.st_mtime_ns, _NSEC)
    ctime, ctimensec = divmod(st.st_ctime_ns, _NSEC)
    return (
        st.st_ino & _U64, st.st_size & _U64, st.st_blocks & _U64,
        atime & _U64, mtime & _U64, ctime & _U64, atimensec, mtimensec, ctimensec,
        st.st_mode & _U32, min(st.st_nlink, _U32), st.st_uid & _U32, st.st_gid & _U32,
        _encode_dev(st.st_rdev), st.st_blksize & _U32, 0,
    )  # fmt: skip


def attr_from_stat(st: os.stat_result) -> p.Attr:
    """fuse_attr from a host stat, typed."""
    return p.Attr(*attr_values(st))


def _encode_dev(dev: int) -> int:
    """The kernel's new_encode_dev: the 32-bit dev_t fuse_attr carries."""
    if not dev:  # every file but a device node
        return 0
    major, minor = os.major(dev), os.minor(dev)
    return ((minor & 0xFF) | (major & 0xFFF) << 8 | (minor & ~0xFF) << 12) & _U32


def _typed(layout: type[Body], serve: Callable[[int, Body], p.ReplyBody]) -> Route[Body]:
    """A route from a function of (nodeid, body) that returns the typed reply body."""
    return Route(layout, lambda unique, nodeid, body: p.encode_reply(unique, serve(nodeid, body)))


def _done(layout: type[Body], serve: Callable[[int, Body], None]) -> Route[Body]:
    """A route for a request answered by an empty reply once `serve` returns."""
    def empty(nodeid: int, body: Body) -> p.Empty:
        serve(nodeid, body)
        return p.EMPTY
    return _typed(layout, empty)


def _sized(answer: bytes | int) -> p.Data | p.XattrSizeOut:
    """GETXATTR and LISTXATTR: the bytes, or fuse_getxattr_out when the guest asked size 0."""
    return p.Data(answer) if isinstance(answer, bytes) else p.XattrSizeOut(answer)


def _statfs(st: os.statvfs_result) -> p.StatfsOut:
    return p.StatfsOut(
        st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree,
        st.f_bsize, st.f_namemax, st.f_frsize,
    )  # fmt: skip


def _time_ns(valid: int, given: int, now_bit: int, sec: int, nsec: int, now: int) -> int | None:
    if valid & now_bit:
        return now
    if valid & given:
        signed = sec - (1 << 64) if sec >> 63 else sec  # fuse.h times are time64_t on the wire
        return signed * _NSEC + nsec
    return None


def _check_transfer(size: int) -> None:
    if size > MAX_TRANSFER:
        raise OSError(errno.EINVAL, f"transfer of {size} bytes above max {MAX_TRANSFER}")


def _errno_of(err: OSError) -> int:
    code = err.errno
    return code if isinstance(code, int) and 0 < code < ERRNO_LIMIT else errno.EIO
