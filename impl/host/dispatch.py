"""Request dispatch: one FUSE request's bytes in, its reply's bytes out.

`Dispatcher(session, mapper).handle(request)` decodes the request with `impl.protocol`,
calls the guest's `GuestSession` (docs/ARCHITECTURE.md), and encodes the reply or the
errno. It knows nothing of virtqueues. DAX mappings are granted by the session and then
donated to the front-end through `mapper` (the vhost-user back-end's SHMEM_MAP/_UNMAP).

Nothing escapes `handle`: a filesystem failure becomes its errno, a malformed request
EINVAL (or ENOSYS for an opcode we do not serve), and anything unexpected EIO with a log
line. FORGET, BATCH_FORGET and INTERRUPT get no reply at all (None).
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pagefs.impl import protocol as p
from pagefs.impl.protocol import constants as c
from pagefs.impl.protocol.codec import ERRNO_LIMIT

if TYPE_CHECKING:
    from .passthrough import Entry, GuestSession, MapGrant

log = logging.getLogger("pagefs.host")

# The largest READ, WRITE or READDIR buffer we agree to (max_write, max_pages).
MAX_TRANSFER = 1 << 20
# map_alignment: foffset and moffset need only be page aligned (log2 of the page size).
MAP_ALIGNMENT = mmap.PAGESIZE.bit_length() - 1
_NSEC = 1_000_000_000
_U32 = 0xFFFF_FFFF
_U64 = (1 << 64) - 1


class Mapper(Protocol):
    """The front-end's DAX window as the back-end reaches it (VHOST_USER_BACKEND_SHMEM_*).

    Both raise OSError when the front-end refuses.
    """

    def shmem_map(
        self, fd: int, fd_offset: int, shm_offset: int, length: int, writable: bool
    ) -> None: ...

    def shmem_unmap(self, shm_offset: int, length: int) -> None: ...


class Dispatcher:
    """Serves one guest's requests against its session; one per connection."""

    def __init__(self, session: GuestSession, mapper: Mapper) -> None:
        self.session = session
        self.mapper = mapper
        self.initialized = False
        self._unsupported_logged: set[int] = set()
        # Requests arrive on several queues at once; the session's record of the window and
        # the front-end's window must change together, one mapping request at a time.
        self._window_lock = threading.Lock()
        self._handlers: dict[int, Callable[[p.Request], p.ReplyBody | None]] = {
            c.Opcode.INIT: self._init,
            c.Opcode.DESTROY: self._destroy,
            c.Opcode.LOOKUP: lambda r: _entry(session.lookup(r.nodeid, r.body.name)),
            c.Opcode.FORGET: self._forget,
            c.Opcode.BATCH_FORGET: self._batch_forget,
            c.Opcode.INTERRUPT: lambda r: None,  # requests are served to the end, one by one
            c.Opcode.GETATTR: self._getattr,
            c.Opcode.SETATTR: self._setattr,
            c.Opcode.READLINK: lambda r: p.Data(session.readlink(r.nodeid)),
            c.Opcode.SYMLINK: lambda r: _entry(
                session.symlink(r.nodeid, r.body.name, r.body.target)
            ),
            c.Opcode.MKDIR: lambda r: _entry(session.mkdir(r.nodeid, r.body.name, r.body.mode)),
            c.Opcode.UNLINK: lambda r: _empty(session.unlink(r.nodeid, r.body.name)),
            c.Opcode.RMDIR: lambda r: _empty(session.rmdir(r.nodeid, r.body.name)),
            c.Opcode.RENAME: self._rename,
            c.Opcode.RENAME2: self._rename,
            c.Opcode.OPEN: lambda r: p.OpenOut(session.open(r.nodeid, r.body.flags), _FOPEN),
            c.Opcode.CREATE: self._create,
            c.Opcode.READ: self._read,
            c.Opcode.WRITE: lambda r: p.WriteOut(
                session.write(r.body.fh, r.body.offset, r.body.data)
            ),
            c.Opcode.STATFS: lambda r: _statfs(session.statfs(r.nodeid)),
            c.Opcode.FLUSH: lambda r: _empty(session.flush(r.body.fh)),
            c.Opcode.FSYNC: lambda r: _empty(
                session.fsync(r.body.fh, bool(r.body.fsync_flags & c.FUSE_FSYNC_FDATASYNC))
            ),
            c.Opcode.RELEASE: self._release,
            c.Opcode.OPENDIR: lambda r: p.OpenOut(session.opendir(r.nodeid)),
            c.Opcode.READDIR: self._readdir,
            c.Opcode.RELEASEDIR: lambda r: _empty(session.releasedir(r.body.fh)),
            c.Opcode.SETUPMAPPING: self._setupmapping,
            c.Opcode.REMOVEMAPPING: self._removemapping,
        }

    # -- the one entry point -------------------------------------------------------

    def handle(self, request: bytes) -> bytes | None:
        """The reply to one request, or None when the request takes no reply."""
        try:
            req = p.decode_request(request)
        except p.ProtocolError as err:
            return self._refuse_malformed(err)
        except Exception:
            log.exception("%s: request decoder failed", self._name)
            return None
        if not p.expects_reply(req.opcode):
            self._serve_quietly(req)
            return None
        try:
            return p.encode_reply(req.unique, self._serve(req))
        except OSError as err:
            return p.encode_error(req.unique, _errno_of(err))
        except Exception:
            log.exception("%s: %s failed", self._name, req.opcode.name)
            return p.encode_error(req.unique, errno.EIO)

    def _serve(self, req: p.Request) -> p.ReplyBody:
        if not self.initialized and req.opcode != c.Opcode.INIT:
            log.info("%s: %s before INIT refused (EIO)", self._name, req.opcode.name)
            raise OSError(errno.EIO, "request before INIT")
        handler = self._handlers.get(req.opcode)
        if handler is None:
            self._note_unsupported(req.opcode)
            raise OSError(errno.ENOSYS, f"{req.opcode.name} not served")
        return handler(req)

    def _serve_quietly(self, req: p.Request) -> None:
        """FORGET-like requests: the guest waits for nothing, so failures are only logged."""
        if not self.initialized:
            return
        try:
            self._handlers[req.opcode](req)
        except OSError:
            pass  # the session has logged the refusal
        except Exception:
            log.exception("%s: %s failed", self._name, req.opcode.name)

    def _refuse_malformed(self, err: p.ProtocolError) -> bytes | None:
        if err.errno == errno.ENOSYS and err.opcode is not None:
            self._note_unsupported(err.opcode)
        else:
            log.info("%s: malformed request refused: %s", self._name, err)
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

    def _init(self, req: p.Request) -> p.InitOut:
        """Version and capability negotiation (the rules at the top of fuse.h)."""
        if self.initialized:
            raise OSError(errno.EIO, "second INIT")
        offer: p.InitIn = req.body
        if offer.major > c.FUSE_KERNEL_VERSION:
            # Answer with our major only; the guest then sends a new INIT in our major.
            return p.InitOut(c.FUSE_KERNEL_VERSION, c.FUSE_KERNEL_MINOR_VERSION)
        if offer.major < c.FUSE_KERNEL_VERSION or offer.minor < c.FUSE_MIN_MINOR_VERSION:
            log.info("%s: INIT %d.%d refused: we need %d.%d or later", self._name, offer.major,
                     offer.minor, c.FUSE_KERNEL_VERSION, c.FUSE_MIN_MINOR_VERSION)
            raise OSError(errno.EPROTO, "protocol version too old")
        wanted = c.InitFlag.BIG_WRITES | c.InitFlag.MAX_PAGES | c.InitFlag.MAP_ALIGNMENT
        flags = offer.flags & wanted
        dax = bool(flags & c.InitFlag.MAP_ALIGNMENT)
        self.initialized = True
        return p.InitOut(
            major=c.FUSE_KERNEL_VERSION,
            minor=min(offer.minor, c.FUSE_KERNEL_MINOR_VERSION),
            max_readahead=offer.max_readahead,
            flags=flags,
            max_write=MAX_TRANSFER,
            time_gran=1,
            max_pages=MAX_TRANSFER // mmap.PAGESIZE,
            map_alignment=MAP_ALIGNMENT if dax else 0,
        )

    def _destroy(self, req: p.Request) -> p.Empty:
        # The guest unmounted; it may INIT again on this connection. What it still holds is
        # released when the connection goes (RECLAIM), as for any disconnect.
        self.initialized = False
        return p.EMPTY

    def _forget(self, req: p.Request) -> None:
        self.session.forget(req.nodeid, req.body.nlookup)

    def _batch_forget(self, req: p.Request) -> None:
        for one in req.body.entries:
            try:
                self.session.forget(one.nodeid, one.nlookup)
            except OSError:
                pass  # one stale nodeid must not keep the others alive

    # -- attributes ----------------------------------------------------------------

    def _getattr(self, req: p.Request) -> p.AttrOut:
        body: p.GetattrIn = req.body
        fh = body.fh if body.getattr_flags & c.FUSE_GETATTR_FH else None
        return p.AttrOut(attr_from_stat(self.session.getattr(req.nodeid, fh)))

    def _setattr(self, req: p.Request) -> p.AttrOut:
        body: p.SetattrIn = req.body
        valid = c.SetattrValid(body.valid)
        if valid & (c.SetattrValid.UID | c.SetattrValid.GID):
            raise OSError(errno.EPERM, "owner changes are not served")
        now = time.time_ns()
        st = self.session.setattr(
            req.nodeid,
            body.fh if valid & c.SetattrValid.FH else None,
            size=body.size if valid & c.SetattrValid.SIZE else None,
            mode=stat.S_IMODE(body.mode) if valid & c.SetattrValid.MODE else None,
            atime_ns=_time_ns(valid, c.SetattrValid.ATIME, c.SetattrValid.ATIME_NOW,
                              body.atime, body.atimensec, now),
            mtime_ns=_time_ns(valid, c.SetattrValid.MTIME, c.SetattrValid.MTIME_NOW,
                              body.mtime, body.mtimensec, now),
        )  # fmt: skip
        return p.AttrOut(attr_from_stat(st))

    # -- names -----------------------------------------------------------------------

    def _rename(self, req: p.Request) -> p.Empty:
        body = req.body
        flags = body.flags if isinstance(body, p.Rename2In) else 0
        self.session.rename(req.nodeid, body.oldname, body.newdir, body.newname, flags)
        return p.EMPTY

    def _create(self, req: p.Request) -> p.CreateOut:
        body: p.CreateIn = req.body
        entry, fh = self.session.create(req.nodeid, body.name, body.flags, body.mode)
        return p.CreateOut(_entry(entry), p.OpenOut(fh, _FOPEN))

    # -- data --------------------------------------------------------------------------

    def _read(self, req: p.Request) -> p.Data:
        body: p.ReadIn = req.body
        _check_transfer(body.size)
        return p.Data(self.session.read(body.fh, body.offset, body.size))

    def _release(self, req: p.Request) -> p.Empty:
        body: p.ReleaseIn = req.body
        try:
            if body.release_flags & c.FUSE_RELEASE_FLUSH:
                self.session.flush(body.fh)
        finally:
            self.session.release(body.fh)
        return p.EMPTY

    def _readdir(self, req: p.Request) -> p.Dirents:
        """As many entries after `offset` as fit in the guest's buffer."""
        body: p.ReadIn = req.body
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

    def _setupmapping(self, req: p.Request) -> p.Empty:
        body: p.SetupmappingIn = req.body
        with self._window_lock:
            if body.fh != c.FUSE_SETUPMAPPING_NO_FH:
                grant = self.session.setupmapping(
                    body.fh, body.foffset, body.length, body.writable, body.moffset
                )
            else:
                grant = self._grant_by_nodeid(req.nodeid, body)
            try:
                self.mapper.shmem_map(
                    grant.fd, grant.fd_offset, body.moffset, grant.length, grant.writable
                )
            except BaseException:
                # The front-end did not map it, so the host must not believe it is mapped.
                try:
                    self.session.removemapping(body.moffset, grant.length)
                except OSError:
                    pass
                raise
            finally:
                os.close(grant.fd)
        return p.EMPTY

    def _grant_by_nodeid(self, nodeid: int, body: p.SetupmappingIn) -> MapGrant:
        """A Linux guest maps by nodeid: open a handle in the mode asked for, map through it
        (same checks: export mode, access mode, range) and release it; the mapping outlives
        the handle (LIFETIME)."""
        fh = self.session.open(nodeid, os.O_RDWR if body.writable else os.O_RDONLY)
        try:
            return self.session.setupmapping(
                fh, body.foffset, body.length, body.writable, body.moffset
            )
        finally:
            self.session.release(fh)

    def _removemapping(self, req: p.Request) -> p.Empty:
        with self._window_lock:
            for one in req.body.entries:
                self.session.removemapping(one.moffset, one.length)
                self.mapper.shmem_unmap(one.moffset, one.length)
        return p.EMPTY


# Nothing is cached on the guest's side that could go stale: zero entry and attribute
# timeouts, and file data through DIRECT_IO when not through the DAX window (which the
# guest kernel prefers over this flag).
_FOPEN = int(c.OpenReplyFlag.DIRECT_IO)


def attr_from_stat(st: os.stat_result) -> p.Attr:
    """fuse_attr from a host stat: times split into seconds (two's complement) and ns."""
    atime, atimensec = divmod(st.st_atime_ns, _NSEC)
    mtime, mtimensec = divmod(st.st_mtime_ns, _NSEC)
    ctime, ctimensec = divmod(st.st_ctime_ns, _NSEC)
    return p.Attr(
        ino=st.st_ino & _U64, size=st.st_size & _U64, blocks=st.st_blocks & _U64,
        atime=atime & _U64, mtime=mtime & _U64, ctime=ctime & _U64,
        atimensec=atimensec, mtimensec=mtimensec, ctimensec=ctimensec,
        mode=st.st_mode & _U32, nlink=min(st.st_nlink, _U32), uid=st.st_uid & _U32,
        gid=st.st_gid & _U32, rdev=_encode_dev(st.st_rdev), blksize=st.st_blksize & _U32,
    )  # fmt: skip


def _encode_dev(dev: int) -> int:
    """The kernel's new_encode_dev: the 32-bit dev_t fuse_attr carries."""
    if not dev:  # every file but a device node
        return 0
    major, minor = os.major(dev), os.minor(dev)
    return ((minor & 0xFF) | (major & 0xFFF) << 8 | (minor & ~0xFF) << 12) & _U32


def _entry(entry: Entry) -> p.EntryOut:
    return p.EntryOut(entry.nodeid, entry.generation, attr_from_stat(entry.attr))


def _empty(_: None) -> p.Empty:
    return p.EMPTY


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
