"""The operations the state machines drive, declared once, as data.

Each `Operation` names a spec operation and says, in one place, everything the suite
does with it:

- how the machine draws its arguments from the spec state the run has reached
  (`arguments`, a function of the machine's draws: held nodeids, live handles, mapped
  ranges, plus a measured share of stale or malformed ones in the families that judge
  them);
- when the machine may run it (`capability` the target must offer, `needs`: what a
  judging family waits for before spending a step on it, `peers`: a second guest);
- how a departure on it is attributed to a named property (`reads_bytes`, `lifetime`,
  `access_errno`, `returns`, `confine`, `fallback`, `fallback_read_only`), read by
  `attribute.py`;
- what a successful change touched, for the probes that look at it from every side
  (`touches`).

`machines.py` generates one hypothesis rule per entry of `OPERATIONS`; a family lists
the operations it runs (`families.py`). A new operation is one entry here plus its name
in the families that should run it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hypothesis import strategies as st

from pagefs.conformance.target import MAPPINGS, RESET, SPECIAL
from pagefs.spec import Errno, State
from pagefs.spec.datatypes import (
    O_CREAT,
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFIFO,
    S_IFREG,
    S_IFSOCK,
    FileKind,
    HandleKind,
)
from pagefs.spec.tree import resolve_path

if TYPE_CHECKING:
    from pagefs.conformance.machines import SpecMachine

PAGE = 4096
RANGES_USED = 3  # window ranges the machines map into (small, so accesses collide)
OFFSETS = st.one_of(st.sampled_from([0, 1, 7, PAGE - 1, PAGE, PAGE + 3, 2 * PAGE - 1, 2 * PAGE]),
                    st.integers(0, 3 * PAGE))
SIZES = st.sampled_from([0, 1, 100, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE, 2 * PAGE + 5])
DATA = st.binary(min_size=1, max_size=8)
MODES = st.sampled_from([0o600, 0o644, 0o755, 0o400])
ACCESS = st.sampled_from([O_RDONLY, O_WRONLY, O_RDWR])
DIR_NAMES = (b"d", b"e")
# user.* only: a syscall view run as root may set trusted.* where pagefs refuses (EPERM)
XATTR_NAMES = st.sampled_from([b"user.a", b"user.b"])
XATTR_CREATE, XATTR_REPLACE = 1, 2


class Need(enum.Enum):
    """What a guest must hold (or the export contain) for a judging family to spend a
    step on an operation; families that judge bad arguments run it regardless."""

    FILE = "a regular file in the export"
    NODE = "a nodeid besides the root"
    HANDLE = "a file handle"
    DIRHANDLE = "a directory handle"
    MAPPED = "a mapped window range"


class Subject(enum.Enum):
    """What a data access goes through, for LIFETIME: a failure where the spec says the
    file lives on (after RELEASE of the handle a mapping came through, or after unlink)."""

    WINDOW = "a window offset"
    NODE = "a nodeid"
    HANDLE = "a file handle"


class Returns(enum.Enum):
    """The identifier-bearing result of an operation, for HANDLE, NODEID and COH-META."""

    ATTR = "attributes"
    ENTRY = "an entry (nodeid and attributes)"
    CREATED = "an entry and a new handle"
    HANDLE = "a new handle"


Arguments = Callable[["SpecMachine", st.DataObject], "tuple[object, ...] | None"]
Touched = tuple[int, int, int]  # (inode, file offset, length)


@dataclass(frozen=True, eq=False)
class Operation:
    """One spec operation as the suite drives and judges it."""

    name: str  # the spec's name (pagefs.spec.REGISTRY)
    arguments: Arguments  # drawn from the state the run has reached; None: skip this step
    fallback: str  # the property a departure names when nothing more specific does
    needs: Need | None = None
    capability: str | None = None
    peers: bool = False  # needs a second guest (sessions come and go)
    reads_bytes: bool = False  # a wrong byte names whoever last wrote it
    lifetime: Subject | None = None
    access_errno: Errno | None = None  # the errno that means "this handle's access mode"
    returns: Returns | None = None
    confine: Callable[[State, tuple, set[Errno]], bool] | None = None
    fallback_read_only: str | None = None  # the fallback in a read-only export
    touches: Callable[[State, tuple], Touched | None] | None = None

    @property
    def rule_name(self) -> str:
        return self.name.lower().replace(".", "_")

    def __repr__(self) -> str:
        return f"Operation({self.name})"


# --- what a change touched (for the probes) ---

def _host_chmod_touched(state: State, args: tuple) -> Touched | None:
    ino = resolve_path(state, args[0])
    if isinstance(ino, frozenset):
        return None
    return ino, max(0, state.inodes[ino].size - 1), 2


def _host_write_touched(state: State, args: tuple) -> Touched | None:
    ino = resolve_path(state, args[0])
    return None if isinstance(ino, frozenset) else (ino, args[1], len(args[2]))


def _host_truncate_touched(state: State, args: tuple) -> Touched | None:
    ino = resolve_path(state, args[0])
    return None if isinstance(ino, frozenset) else (ino, max(0, args[1] - 1), 2)


def _store_touched(state: State, args: tuple) -> Touched | None:
    guest, woffset, data = args
    size = state.config.range_size
    mapped = state.guests[guest].window[woffset // size] \
        if 0 <= woffset < state.config.window_size else None
    return None if mapped is None else (mapped.ino, mapped.foffset + woffset % size, len(data))


def _write_touched(state: State, args: tuple) -> Touched | None:
    handle = state.guests[args[0]].handles.get(args[1])
    return (handle.ino, args[2], len(args[3])) if handle else None


def _fallocate_touched(state: State, args: tuple) -> Touched | None:
    handle = state.guests[args[0]].handles.get(args[1])
    return (handle.ino, args[2], args[3]) if handle else None


def _setattr_touched(state: State, args: tuple) -> Touched | None:
    node = state.guests[args[0]].nodes.get(args[1])
    return (node.ino, 0, 1) if node else None


# --- what a CONFINE departure looks like ---

def _dot_name(state: State, args: tuple, errnos: set[Errno]) -> bool:
    return args[2] in (b".", b"..")


def _refused_special(state: State, args: tuple, errnos: set[Errno]) -> bool:
    return bool(errnos & {Errno.ELOOP, Errno.ENXIO})


def _opens_special(state: State, args: tuple, errnos: set[Errno]) -> bool:
    node = state.guests[args[0]].nodes.get(args[1])
    special = node is not None and state.inodes[node.ino].kind in (FileKind.LNK, FileKind.FIFO)
    return _refused_special(state, args, errnos) or special


# --- argument strategies that need more than one line ---

def _lookup(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data)
    # Confinement tries the first escape often: '..' (at the root, mostly: the parent is
    # drawn from held directories).
    escapes = [b"..", b".."] if "CONFINE" in m.family.properties else []
    names = [*m.family.files, *DIR_NAMES, b"s", b"p", *escapes]
    name = data.draw(st.sampled_from(names)) if data.draw(st.booleans()) else m.name(data)
    return g, m.nodeid(data, g, FileKind.DIR), name


def _setattr(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data, Need.NODE)
    which = data.draw(st.sampled_from(["size", "mode", "mtime"]))
    size = data.draw(SIZES) if which == "size" else None
    mode = m.mode(data) if which == "mode" else None
    mtime = data.draw(st.integers(10**18, 2 * 10**18)) if which == "mtime" else None
    return g, m.nodeid(data, g, FileKind.REG), size, mode, mtime


def _rename(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data)
    src, dst = m.nodeid(data, g, FileKind.DIR), m.nodeid(data, g, FileKind.DIR)
    files = data.draw(st.booleans())
    flags = data.draw(st.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]))
    name, newname = m.name(data, files), m.name(data, files)
    if flags and data.draw(st.booleans(), label="existing names"):
        # NOREPLACE and EXCHANGE are about a target that exists: name existing entries.
        name = _existing(m, data, g, src) or name
        newname = _existing(m, data, g, dst) or newname
    return g, src, name, dst, newname, flags


def _existing(m: SpecMachine, data: st.DataObject, g: int, parent: int) -> bytes | None:
    """A name the spec says is in directory `parent` (as guest g holds it), if any."""
    node = m.state.guests[g].nodes.get(parent)
    inode = m.state.inodes.get(node.ino) if node else None
    names = sorted(inode.entries) if inode is not None and inode.kind is FileKind.DIR else []
    return data.draw(st.sampled_from(names), label="existing") if names else None


def _open(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data, Need.NODE)
    flags = data.draw(ACCESS) | data.draw(st.sampled_from([0, 0, 0, O_TRUNC]))
    kind = None if m.family.bad_args else FileKind.REG
    return g, m.nodeid(data, g, kind), flags


def _create(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data)
    flags = data.draw(ACCESS) | O_CREAT | data.draw(st.sampled_from([0, O_EXCL]))
    return g, m.nodeid(data, g, FileKind.DIR), m.name(data), flags, m.mode(data)


def _setupmapping(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data, Need.HANDLE)
    size = m.config.range_size
    index = data.draw(st.integers(0, RANGES_USED - 1), label="range")
    foffset = data.draw(st.sampled_from([0, 0, PAGE]), label="foffset")
    return (g, m.fh(data, g), foffset, size, data.draw(st.booleans(), label="writable"),
            index * size)


def _removemapping(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data, Need.MAPPED)
    size = m.config.range_size
    return g, data.draw(st.integers(0, RANGES_USED - 1)) * size, size


def _link(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data, Need.NODE)
    return g, m.nodeid(data, g), m.nodeid(data, g, FileKind.DIR), m.name(data)


def _mknod(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    # Device nodes are left out: a syscall view made by root would make one, where
    # pagefs refuses (EPERM, the tests' business); the kinds every target can make.
    g = m.guest(data)
    kind = data.draw(st.sampled_from([S_IFIFO, S_IFSOCK, S_IFREG]))
    return g, m.nodeid(data, g, FileKind.DIR), m.name(data), kind | m.mode(data)


def _setxattr(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data, Need.NODE)
    flags = data.draw(st.sampled_from([0, 0, XATTR_CREATE, XATTR_REPLACE]))
    return g, m.nodeid(data, g), data.draw(XATTR_NAMES), data.draw(DATA), flags


def _fallocate(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data, Need.HANDLE)
    mode = data.draw(st.sampled_from([0, 0x01, 0x03, 0x10, 0x11, 0x02]))
    return g, m.fh(data, g), m.offset(data, write=True), data.draw(st.integers(1, PAGE)), mode


def _peer(connected: bool) -> Arguments:
    """A guest other than the first, if it is (DESTROY) or is not connected."""
    def arguments(m: SpecMachine, data: st.DataObject) -> tuple[object, ...] | None:
        g = data.draw(st.integers(1, len(m.session.guests) - 1))
        return (g,) if m.state.guests[g].connected == connected else None
    return arguments


def _init(m: SpecMachine, data: st.DataObject) -> tuple[object, ...] | None:
    """A guest that left connects again; a connected one, when the target can be asked,
    sends INIT on its live connection (its kernel was reset without unmounting)."""
    g = data.draw(st.integers(0, len(m.session.guests) - 1))
    if m.state.guests[g].connected and RESET not in m.factory.capabilities:
        return None
    return (g,)


def _symlink(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    g = m.guest(data)
    target = data.draw(st.sampled_from([b"a", b"../x", b"/etc"]))
    return g, m.nodeid(data, g, FileKind.DIR), m.name(data), target


def _host_symlink(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
    target = data.draw(st.sampled_from([b"a", b"..", b"../..", b"/etc/passwd", b"d"]))
    return target, data.draw(st.sampled_from([b"s", b"d/s"]))


def _guest_then(need: Need | None,
                rest: Callable[[SpecMachine, st.DataObject, int], tuple[object, ...]],
                ) -> Arguments:
    """Arguments for a request: a guest (one holding `need`), then the rest for it."""
    def arguments(m: SpecMachine, data: st.DataObject) -> tuple[object, ...]:
        g = m.guest(data, need)
        return (g, *rest(m, data, g))
    return arguments


NAMESPACE, HANDLE, LIFETIME = "NAMESPACE", "HANDLE", "LIFETIME"
DIR = FileKind.DIR

OPERATIONS: tuple[Operation, ...] = (
    # --- the host, changing the export under the guests ---
    Operation("host.create", lambda m, d: (m.path(d), m.mode(d)), NAMESPACE),
    Operation("host.write", lambda m, d: (m.path(d), m.offset(d, write=True), d.draw(DATA)),
              NAMESPACE, needs=Need.FILE, touches=_host_write_touched),
    Operation("host.truncate", lambda m, d: (m.path(d), d.draw(SIZES)), NAMESPACE,
              needs=Need.FILE, touches=_host_truncate_touched),
    Operation("host.unlink", lambda m, d: (m.path(d),), NAMESPACE, needs=Need.FILE),
    Operation("host.rename", lambda m, d: (m.path(d), m.path(d)), NAMESPACE),
    Operation("host.mkdir", lambda m, d: (d.draw(st.sampled_from(DIR_NAMES)), 0o755), NAMESPACE),
    Operation("host.rmdir", lambda m, d: (d.draw(st.sampled_from(DIR_NAMES)),), NAMESPACE),
    Operation("host.chmod", lambda m, d: (m.path(d), m.mode(d)), NAMESPACE,
              needs=Need.FILE, touches=_host_chmod_touched),
    Operation("host.symlink", _host_symlink, NAMESPACE),
    Operation("host.mkfifo", lambda m, d: (d.draw(st.sampled_from([b"p", b"d/p"])), 0o644),
              NAMESPACE),
    Operation("host.read", lambda m, d: (m.path(d), m.offset(d), d.draw(st.integers(1, 8))),
              NAMESPACE, needs=Need.FILE, reads_bytes=True),
    Operation("host.stat", lambda m, d: (m.path(d),), NAMESPACE, needs=Need.FILE,
              returns=Returns.ATTR),
    # --- guest requests: the namespace ---
    Operation("LOOKUP", _lookup, NAMESPACE, returns=Returns.ENTRY, confine=_dot_name),
    Operation("FORGET", _guest_then(None, lambda m, d, g: (
        m.nodeid(d, g), d.draw(st.integers(1, 2)))), HANDLE),
    Operation("GETATTR", _guest_then(Need.NODE, lambda m, d, g: (m.nodeid(d, g),)), HANDLE,
              needs=Need.NODE, lifetime=Subject.NODE, returns=Returns.ATTR),
    Operation("SETATTR", _setattr, HANDLE, needs=Need.NODE, returns=Returns.ATTR,
              fallback_read_only="RO-EXPORT", touches=_setattr_touched),
    Operation("READLINK", _guest_then(None, lambda m, d, g: (m.nodeid(d, g),)), NAMESPACE,
              confine=_refused_special),
    Operation("SYMLINK", _symlink, NAMESPACE, returns=Returns.ENTRY),
    Operation("MKDIR", _guest_then(None, lambda m, d, g: (
        m.nodeid(d, g, DIR), m.name(d, files=False), m.dir_mode(d))), NAMESPACE,
        returns=Returns.ENTRY),
    Operation("UNLINK", _guest_then(None, lambda m, d, g: (m.nodeid(d, g, DIR), m.name(d))),
              NAMESPACE),
    Operation("RMDIR", _guest_then(None, lambda m, d, g: (
        m.nodeid(d, g, DIR), m.name(d, files=False))), NAMESPACE),
    Operation("RENAME", _rename, NAMESPACE),
    Operation("OPENDIR", _guest_then(None, lambda m, d, g: (m.nodeid(d, g, DIR),)), NAMESPACE,
              returns=Returns.HANDLE),
    Operation("READDIR", _guest_then(Need.DIRHANDLE, lambda m, d, g: (
        m.fh(d, g, HandleKind.DIR),)), NAMESPACE, needs=Need.DIRHANDLE),
    Operation("RELEASEDIR", _guest_then(Need.DIRHANDLE, lambda m, d, g: (
        m.fh(d, g, HandleKind.DIR),)), NAMESPACE, needs=Need.DIRHANDLE),
    Operation("STATFS", _guest_then(None, lambda m, d, g: (m.nodeid(d, g),)), NAMESPACE),
    # --- guest requests: files ---
    Operation("OPEN", _open, NAMESPACE, needs=Need.NODE, returns=Returns.HANDLE,
              confine=_opens_special),
    Operation("CREATE", _create, NAMESPACE, returns=Returns.CREATED, confine=_refused_special),
    Operation("READ", _guest_then(Need.HANDLE, lambda m, d, g: (
        m.fh(d, g), m.offset(d), d.draw(st.integers(1, 8)))), "COH-READ",
        needs=Need.HANDLE, reads_bytes=True, lifetime=Subject.HANDLE, access_errno=Errno.EBADF),
    Operation("WRITE", _guest_then(Need.HANDLE, lambda m, d, g: (
        m.fh(d, g), m.offset(d, write=True), d.draw(DATA))), HANDLE,
        needs=Need.HANDLE, lifetime=Subject.HANDLE, access_errno=Errno.EBADF,
        fallback_read_only="RO-EXPORT", touches=_write_touched),
    Operation("RELEASE", _guest_then(Need.HANDLE, lambda m, d, g: (m.fh(d, g),)), HANDLE,
              needs=Need.HANDLE),
    Operation("FLUSH", _guest_then(Need.HANDLE, lambda m, d, g: (m.fh(d, g),)), HANDLE,
              needs=Need.HANDLE, lifetime=Subject.HANDLE),
    Operation("FSYNC", _guest_then(Need.HANDLE, lambda m, d, g: (
        m.fh(d, g), d.draw(st.booleans()))), "DURABLE", needs=Need.HANDLE,
        lifetime=Subject.HANDLE),
    # --- guest requests and accesses: the window ---
    Operation("SETUPMAPPING", _setupmapping, LIFETIME, needs=Need.HANDLE, capability=MAPPINGS,
              lifetime=Subject.HANDLE, access_errno=Errno.EACCES),
    Operation("REMOVEMAPPING", _removemapping, LIFETIME, needs=Need.MAPPED,
              capability=MAPPINGS),
    Operation("LOAD", _guest_then(Need.MAPPED, lambda m, d, g: (
        m.woffset(d, g), d.draw(st.integers(1, 8)))), "EOF-FAULT",
        needs=Need.MAPPED, capability=MAPPINGS, reads_bytes=True, lifetime=Subject.WINDOW),
    Operation("STORE", _guest_then(Need.MAPPED, lambda m, d, g: (
        m.woffset(d, g, write=True), d.draw(DATA))), "EOF-FAULT",
        needs=Need.MAPPED, capability=MAPPINGS, lifetime=Subject.WINDOW,
        touches=_store_touched),
    # --- guest requests: links, special files, extended attributes, space ---
    Operation("LINK", _link, NAMESPACE, needs=Need.NODE, capability=SPECIAL,
              returns=Returns.ENTRY, fallback_read_only="RO-EXPORT"),
    Operation("MKNOD", _mknod, NAMESPACE, capability=SPECIAL, returns=Returns.ENTRY,
              fallback_read_only="RO-EXPORT"),
    Operation("SETXATTR", _setxattr, NAMESPACE, needs=Need.NODE, capability=SPECIAL,
              fallback_read_only="RO-EXPORT"),
    Operation("GETXATTR", _guest_then(Need.NODE, lambda m, d, g: (
        m.nodeid(d, g), d.draw(XATTR_NAMES), d.draw(st.sampled_from([0, 1, 64])))), NAMESPACE,
        needs=Need.NODE, capability=SPECIAL),
    Operation("LISTXATTR", _guest_then(Need.NODE, lambda m, d, g: (
        m.nodeid(d, g), d.draw(st.sampled_from([0, 7, 64])))), NAMESPACE, needs=Need.NODE,
        capability=SPECIAL),
    Operation("REMOVEXATTR", _guest_then(Need.NODE, lambda m, d, g: (
        m.nodeid(d, g), d.draw(XATTR_NAMES))), NAMESPACE, needs=Need.NODE, capability=SPECIAL,
        fallback_read_only="RO-EXPORT"),
    Operation("FALLOCATE", _fallocate, "COH-READ", needs=Need.HANDLE, capability=SPECIAL,
              lifetime=Subject.HANDLE, access_errno=Errno.EBADF, fallback_read_only="RO-EXPORT",
              touches=_fallocate_touched),
    Operation("SYNCFS", _guest_then(None, lambda m, d, g: (m.nodeid(d, g),)), "DURABLE",
              capability=SPECIAL),
    # --- sessions ---
    Operation("DESTROY", _peer(connected=True), HANDLE, peers=True),
    Operation("INIT", _init, HANDLE),
)

BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}


def operations(*names: str) -> frozenset[Operation]:
    """The declared operations of these spec names (a name not declared is an error)."""
    missing = [n for n in names if n not in BY_NAME]
    if missing:
        raise KeyError(f"no declared operation: {', '.join(missing)}")
    return frozenset(BY_NAME[n] for n in names)
