"""One injected fault around a real target: the evidence that each family catches bugs.

`inject(factory, fault)` wraps a real target so that its guests misbehave in exactly
one way; everything else is the real target's. The suite must then fail the family the
fault belongs to, and only sensible ones (tests/conformance/test_faults.py).

    stale-read            loads and READs return what the guest saw first (a private cache)
    lost-store            stores through a mapping are dropped
    reused-handle         a released handle number is handed out again by the next open
    writable-ro-mapping   a read-only export grants writable mappings (through a second,
                          writable handle the guest never asked for)
    missed-eof-fault      an access beyond end of file reads zeros / is dropped, no fault
    leaked-session        a guest that leaves never hangs up: the host keeps what it held
    foreign-read          a READ returns another open file's bytes at that offset (a page
                          freed and handed to another file)
    stale-attrs           attributes are cached for ever: the first GETATTR's answer stays
    rw-behind-ro          a read-only OPEN is opened read-write underneath, so WRITE works
    release-unmaps        RELEASE also removes the mappings made through the handle
    lax-unlink            UNLINK of a name that is not there succeeds
    peer-blind            each guest keeps the pages it loaded until something changes them,
                          except a peer guest's store (a per-guest cache no peer invalidates)
    stale-nodeid          a nodeid the guest forgot still answers, as the export root (its
                          table slot handed on)
    dotdot-escape         '..' at the export root resolves on the host, to the directory
                          above the export
    ignored-caller        requests act as root whatever user the guest names (the header's
                          uid and gid unheeded, as a server without credential switching)

SINGLE-COPY and DURABLE are measured, not stepped (conformance/measured.py); their
faults are the measurement's: `copying-guest` (window guests read by READ, keeping a
copy) and `no-fsync` (FSYNC never sent), in `measured_fault`.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Any

from pagefs.conformance.target import (
    OWN_HANDLES,
    READ_ONLY,
    ROOT_NODEID,
    Entry,
    Target,
    TargetFactory,
)
from pagefs.spec import REGISTRY
from pagefs.spec.datatypes import O_ACCMODE, O_RDWR

PAGE = 4096
FAULTS = ("stale-read", "lost-store", "reused-handle", "writable-ro-mapping",
          "missed-eof-fault", "leaked-session", "foreign-read", "stale-attrs", "rw-behind-ro",
          "release-unmaps", "lax-unlink", "peer-blind", "stale-nodeid", "dotdot-escape",
          "ignored-caller")
# COH-PEER, NODEID and CONFINE need peers, the target's own nodeids and a confined host
# side: their faults wrap `pagefs`, which has all three (`local` has only peers).
ON_PAGEFS = frozenset({"leaked-session", "stale-nodeid", "dotdot-escape", "ignored-caller"})
# The property each fault breaks, which the suite must fail (tests/conformance/test_faults.py).
BREAKS = {"stale-read": "COH-READ", "lost-store": "COH-WRITE", "reused-handle": "HANDLE",
          "writable-ro-mapping": "RO-EXPORT", "missed-eof-fault": "EOF-FAULT",
          "leaked-session": "RECLAIM", "foreign-read": "ISOLATION", "stale-attrs": "COH-META",
          "rw-behind-ro": "ACCESS-MODE", "release-unmaps": "LIFETIME",
          "lax-unlink": "NAMESPACE", "peer-blind": "COH-PEER", "stale-nodeid": "NODEID",
          "dotdot-escape": "CONFINE", "ignored-caller": "OWNERSHIP"}
MEASURED_FAULTS = {"copying-guest": "SINGLE-COPY", "no-fsync": "DURABLE"}


class _Delegate:
    """Everything not overridden goes to the real object."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class StaleRead(_Delegate):
    """A private page cache that is never invalidated: the first sight of a page is kept."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._pages: dict[tuple, bytes] = {}

    def _cached(self, key: tuple, offset: int, size: int, fetch: Any) -> bytes:
        out = b""
        while len(out) < size:
            at = offset + len(out)
            page = (*key, at // PAGE)
            if page not in self._pages:
                self._pages[page] = fetch(at - at % PAGE, PAGE)
            cached = self._pages[page][at % PAGE:at % PAGE + size - len(out)]
            if not cached:
                break
            out += cached
        return out

    def load(self, moffset: int, size: int) -> bytes:
        try:
            got = self._cached(("load",), moffset, size, self._inner.load)
        except OSError:
            return self._inner.load(moffset, size)  # a page that faults is not cached
        return got

    def read(self, fh: int, offset: int, size: int) -> bytes:
        return self._cached(("read", fh), offset, size, lambda o, n: self._inner.read(fh, o, n))


class LostStore(_Delegate):
    def store(self, moffset: int, data: bytes) -> None:
        return None


class ReusedHandle(_Delegate):
    """Handle numbers of its own, recycled lowest-first as file descriptors are."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._inner_of: dict[int, int] = {}

    def _new(self, inner_fh: int) -> int:
        fh = next(n for n in range(1, len(self._inner_of) + 2) if n not in self._inner_of)
        self._inner_of[fh] = inner_fh
        return fh

    def _fh(self, fh: int) -> int:
        return self._inner_of.get(fh, fh + (1 << 30))  # unknown numbers stay unknown

    def open(self, nodeid: int, flags: int) -> int:
        return self._new(self._inner.open(nodeid, flags))

    def opendir(self, nodeid: int) -> int:
        return self._new(self._inner.opendir(nodeid))

    def create(self, parent: int, name: bytes, flags: int, mode: int) -> tuple:
        entry, fh = self._inner.create(parent, name, flags, mode)
        return entry, self._new(fh)

    def release(self, fh: int) -> None:
        self._inner.release(self._fh(fh))
        self._inner_of.pop(fh, None)

    def releasedir(self, fh: int) -> None:
        self._inner.releasedir(self._fh(fh))
        self._inner_of.pop(fh, None)

    def read(self, fh: int, offset: int, size: int) -> bytes:
        return self._inner.read(self._fh(fh), offset, size)

    def write(self, fh: int, offset: int, data: bytes) -> int:
        return self._inner.write(self._fh(fh), offset, data)

    def flush(self, fh: int) -> None:
        self._inner.flush(self._fh(fh))

    def fsync(self, fh: int, datasync: bool = False) -> None:
        self._inner.fsync(self._fh(fh), datasync)

    def readdir(self, fh: int) -> list:
        return self._inner.readdir(self._fh(fh))

    def fallocate(self, fh: int, offset: int, length: int, mode: int) -> None:
        self._inner.fallocate(self._fh(fh), offset, length, mode)

    def setupmapping(self, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> None:
        self._inner.setupmapping(self._fh(fh), foffset, length, writable, moffset)


class WritableRoMapping(_Delegate):
    """A guest of the writable export, made read-only everywhere but in SETUPMAPPING."""

    _REFUSED = ("write", "symlink", "mkdir", "unlink", "rmdir", "rename")

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._node_of: dict[int, int] = {}

    def __getattr__(self, name: str) -> Any:
        if name in self._REFUSED:
            def refuse(*args: Any, **kwargs: Any) -> None:
                raise OSError(errno.EROFS, "read-only export")
            return refuse
        return getattr(self._inner, name)

    def open(self, nodeid: int, flags: int) -> int:
        if flags & O_ACCMODE or flags & 0o1000:  # write access or O_TRUNC
            raise OSError(errno.EROFS, "read-only export")
        fh = self._inner.open(nodeid, flags)
        self._node_of[fh] = nodeid
        return fh

    def create(self, parent: int, name: bytes, flags: int, mode: int) -> tuple:
        raise OSError(errno.EROFS, "read-only export")

    def setattr(self, nodeid: int, fh: int | None = None, **changes: Any) -> Any:
        if any(v is not None for v in changes.values()):
            raise OSError(errno.EROFS, "read-only export")
        return self._inner.setattr(nodeid, fh, **changes)

    def setupmapping(self, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> None:
        if writable and fh in self._node_of:  # the bug: a writable handle behind its back
            fh = self._inner.open(self._node_of[fh], O_RDWR)
        self._inner.setupmapping(fh, foffset, length, writable, moffset)


@contextlib.contextmanager
def _hiding(code: int) -> Iterator[None]:
    """The bug of several faults: an OSError with errno `code` never reaches the suite
    (any other error still does)."""
    try:
        yield
    except OSError as exc:
        if exc.errno != code:
            raise


class MissedEofFault(_Delegate):
    def load(self, moffset: int, size: int) -> bytes:
        with _hiding(errno.EFAULT):
            return self._inner.load(moffset, size)
        return bytes(size)

    def store(self, moffset: int, data: bytes) -> None:
        with _hiding(errno.EFAULT):
            self._inner.store(moffset, data)


class LeakedSession(_Delegate):
    def close(self) -> None:
        return None  # the connection stays up until the target itself stops


class _Opens(_Delegate):
    """Remembers which nodeid each handle was opened on."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._node_of: dict[int, int] = {}

    def open(self, nodeid: int, flags: int) -> int:
        fh = self._inner.open(nodeid, flags)
        self._node_of[fh] = nodeid
        return fh

    def create(self, parent: int, name: bytes, flags: int, mode: int) -> tuple:
        entry, fh = self._inner.create(parent, name, flags, mode)
        self._node_of[fh] = entry.nodeid
        return entry, fh

    def release(self, fh: int) -> None:
        self._inner.release(fh)
        self._node_of.pop(fh, None)


class ForeignRead(_Opens):
    def read(self, fh: int, offset: int, size: int) -> bytes:
        own = self._inner.read(fh, offset, size)
        for other, nodeid in list(self._node_of.items()):
            if nodeid != self._node_of.get(fh):
                with contextlib.suppress(OSError):
                    foreign = self._inner.read(other, offset, size)
                    if foreign.strip(b"\0") and foreign != own:
                        return foreign  # the bug: the page now belongs to another file
        return own


class StaleAttrs(_Delegate):
    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._seen: dict[int, Any] = {}

    def getattr(self, nodeid: int, fh: int | None = None) -> Any:
        if nodeid not in self._seen:
            self._seen[nodeid] = self._inner.getattr(nodeid, fh)
        return self._seen[nodeid]


class RwBehindRo(_Delegate):
    def open(self, nodeid: int, flags: int) -> int:
        if flags & O_ACCMODE == 0:  # O_RDONLY: the bug opens it read-write
            with contextlib.suppress(OSError):
                return self._inner.open(nodeid, (flags & ~O_ACCMODE) | O_RDWR)
        return self._inner.open(nodeid, flags)


class ReleaseUnmaps(_Delegate):
    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._through: dict[int, list[tuple[int, int]]] = {}

    def setupmapping(self, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> None:
        self._inner.setupmapping(fh, foffset, length, writable, moffset)
        self._through.setdefault(fh, []).append((moffset, length))

    def release(self, fh: int) -> None:
        self._inner.release(fh)
        for moffset, length in self._through.pop(fh, []):
            with contextlib.suppress(OSError):
                self._inner.removemapping(moffset, length)  # the bug: mappings die with it


class LaxUnlink(_Delegate):
    def unlink(self, parent: int, name: bytes) -> None:
        with _hiding(errno.ENOENT):
            self._inner.unlink(parent, name)


class PeerBlind(StaleRead):
    """Loads come from the pages this guest loaded before. A change that goes through the
    host (its own, or a guest's request) empties every guest's pages, a change to this
    guest's window or its own store empties its own; a peer guest's store, made in
    memory, empties nothing: what a per-guest cache that peers never invalidate does."""

    # Requests that change no file bytes and no mapping: they leave the pages cached.
    _KEEPS = frozenset({"read", "getattr", "lookup", "forget", "readlink", "opendir",
                        "readdir", "releasedir", "statfs", "flush", "fsync", "release",
                        "getxattr", "listxattr"})
    _OWN_WINDOW = frozenset({"setupmapping", "removemapping"})

    def __init__(self, inner: Any, caches: list[dict]) -> None:
        super().__init__(inner)
        caches.append(self._pages)
        self._caches = caches

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in self._KEEPS or not callable(attr):
            return attr
        return _emptying([self._pages] if name in self._OWN_WINDOW else self._caches, attr)

    def read(self, fh: int, offset: int, size: int) -> bytes:
        return self._inner.read(fh, offset, size)  # READ is never cached: only loads

    def store(self, moffset: int, data: bytes) -> None:
        self._pages.clear()  # its own store it sees; the bug: its peers' pages stay
        self._inner.store(moffset, data)


def _emptying(caches: list[dict], call: Any) -> Any:
    def changing(*args: Any, **kwargs: Any) -> Any:
        for pages in caches:
            pages.clear()
        return call(*args, **kwargs)
    return changing


class _ChangingHost(_Delegate):
    """The host side of `peer-blind`: a host change empties every guest's pages."""

    def __init__(self, inner: Any, caches: list[dict]) -> None:
        super().__init__(inner)
        self._caches = caches

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        return attr if name in ("read", "stat") else _emptying(self._caches, attr)


# Where each guest request carries nodeids (the spec's parameters, less the guest).
_NODE_ARGS = {op.lower(): tuple(i - 1 for i, p in enumerate(spec.params) if p.kind == "NodeId")
              for op, spec in REGISTRY.items()
              if op != "FORGET" and any(p.kind == "NodeId" for p in spec.params)}


class StaleNodeid(_Delegate):
    """Lookup counts kept as the host keeps them; a nodeid whose count FORGET brought to
    zero is not refused but answers as the export root (the bug: its slot handed on)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._counts: dict[int, int] = {}
        self._forgotten: set[int] = set()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        where = _NODE_ARGS.get(name)
        if where is None:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            args = tuple(ROOT_NODEID if i in where and a in self._forgotten else a
                         for i, a in enumerate(args))
            got = attr(*args, **kwargs)
            entry = got[0] if isinstance(got, tuple) and got else got
            if isinstance(entry, Entry):
                self._counts[entry.nodeid] = self._counts.get(entry.nodeid, 0) + 1
                self._forgotten.discard(entry.nodeid)
            return got
        return call

    def forget(self, nodeid: int, nlookup: int) -> None:
        self._inner.forget(nodeid, nlookup)
        self._counts[nodeid] = self._counts.get(nodeid, 0) - nlookup
        if self._counts[nodeid] <= 0 and nodeid != ROOT_NODEID:
            self._forgotten.add(nodeid)

    def reinit(self) -> None:
        self._inner.reinit()
        self._counts.clear()
        self._forgotten.clear()


ESCAPED_NODEID = 1 << 40  # a nodeid of the wrapper's own, for the directory it escaped to


class DotdotEscape(_Delegate):
    """LOOKUP of '..' in the export root is resolved by the host as a path, so it names
    the directory above the export (the bug: nothing stops '..' at the root)."""

    def __init__(self, inner: Any, export: bytes) -> None:
        super().__init__(inner)
        self._above = os.path.dirname(os.path.normpath(export))

    def lookup(self, parent: int, name: bytes) -> Entry:
        if parent == ROOT_NODEID and name == b"..":
            return Entry(ESCAPED_NODEID, 0, os.stat(self._above))
        return self._inner.lookup(parent, name)


class IgnoredCaller(_Delegate):
    def act_as(self, uid: int, gid: int, umask: int) -> None:
        self._inner.act_as(0, 0, umask)  # the bug: every request is root's


_WRAPPERS = {"stale-read": StaleRead, "lost-store": LostStore, "reused-handle": ReusedHandle,
             "writable-ro-mapping": WritableRoMapping, "missed-eof-fault": MissedEofFault,
             "leaked-session": LeakedSession, "foreign-read": ForeignRead,
             "stale-attrs": StaleAttrs, "rw-behind-ro": RwBehindRo,
             "release-unmaps": ReleaseUnmaps, "lax-unlink": LaxUnlink,
             "peer-blind": PeerBlind, "stale-nodeid": StaleNodeid,
             "dotdot-escape": DotdotEscape, "ignored-caller": IgnoredCaller}


class _FaultyTarget(_Delegate):
    def __init__(self, inner: Target, fault: str, read_only: bool) -> None:
        super().__init__(inner)
        self._fault, self.read_only = fault, read_only
        self.name = f"{inner.name}+{fault}"
        self._caches: list[dict] = []  # peer-blind: every guest's cached pages
        if fault == "peer-blind":
            self.host = _ChangingHost(inner.host, self._caches)

    def connect(self) -> Any:
        guest = self._inner.connect()
        if self._fault == "writable-ro-mapping" and not self.read_only:
            return guest
        if self._fault == "peer-blind":
            return PeerBlind(guest, self._caches)
        if self._fault == "dotdot-escape":
            return DotdotEscape(guest, self._inner.host.root)
        return _WRAPPERS[self._fault](guest)

    def close(self) -> None:
        self._inner.close()


class FaultyFactory(TargetFactory):
    def __init__(self, inner: TargetFactory, fault: str) -> None:
        if fault not in _WRAPPERS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        self.inner, self.fault = inner, fault
        self.name = f"{inner.name}+{fault}"
        caps = set(inner.capabilities)
        if fault == "reused-handle":
            caps.add(OWN_HANDLES)  # the handle numbers are now the wrapper's own
        if fault == "writable-ro-mapping":
            caps.add(READ_ONLY)  # a read-only export, faked over the writable one
        self.capabilities = frozenset(caps)

    def why_not(self, capability: str) -> str:
        return self.inner.why_not(capability)

    def start(self, *, read_only: bool = False) -> Target:
        ro_inner = read_only and self.fault != "writable-ro-mapping"
        return _FaultyTarget(self.inner.start(read_only=ro_inner), self.fault,  # type: ignore[return-value]
                             read_only)

    def close(self) -> None:
        self.inner.close()


def inject(factory: TargetFactory, fault: str) -> FaultyFactory:
    return FaultyFactory(factory, fault)
