"""Which named property a departure breaks.

A step the spec cannot explain is first put to the spec's own property predicates
(`pagefs.spec.properties.step_violations`), with the observed result in place of an
allowed one. What they cannot judge -- the host's view after a guest store, attributes,
errnos, identifier confusion -- is named here, from the operation, the errnos the spec
allowed, and a little history the machine keeps (who last wrote a byte, which handle a
mapping came through).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pagefs.conformance import target as t
from pagefs.conformance.session import Bindings, Check, Observed
from pagefs.spec import REGISTRY, Err, Errno, Fault, Ok, Outcome, State
from pagefs.spec.datatypes import Attr, Created, Entry, FileKind, HandleKind
from pagefs.spec.properties import Step, step_violations
from pagefs.spec.tree import resolve_path

_NAMESPACE_OPS = {"LOOKUP", "CREATE", "MKDIR", "UNLINK", "RMDIR", "RENAME", "READDIR",
                  "OPENDIR", "RELEASEDIR", "SYMLINK", "READLINK", "STATFS"}
_WRITE_PATH = {"WRITE", "CREATE", "SETATTR", "UNLINK", "RMDIR", "MKDIR", "RENAME",
               "SYMLINK", "SETUPMAPPING", "STORE", "OPEN"}
_ATTR_OPS = {"GETATTR", "SETATTR", "LOOKUP", "host.stat", "CREATE", "MKDIR", "SYMLINK"}


@dataclass
class History:
    """What the machine remembers beyond the spec state, to name departures well."""

    writer: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)
    mapped_through: dict[tuple[int, int], int] = field(default_factory=dict)  # (g, range) -> fh
    destroyed: set[int] = field(default_factory=set)

    def record(self, state: State, check: Check) -> None:
        """Keep provenance of guest-written bytes after a step that matched."""
        op, args = check.op, check.args
        if op == "STORE" and check.ok:
            guest, woffset, data = args
            for k in range(len(data)):
                where = _window_byte(state, guest, woffset + k)
                if where:
                    self.writer[where] = ("store", guest)
        elif op == "WRITE" and check.ok:
            guest, fh, offset, data = args
            handle = state.guests[guest].handles.get(fh)
            if handle:
                for k in range(len(data)):
                    self.writer[(handle.ino, offset + k)] = ("write", guest)
        elif op in ("host.write", "host.truncate"):
            # The host's bytes replace whatever a guest put there.
            self.writer = {k: v for k, v in self.writer.items() if v[0] == "host"}
        elif op == "SETUPMAPPING" and check.ok:
            guest, fh, _foffset, length, _writable, moffset = args
            size = state.config.range_size
            for index in range(moffset // size, (moffset + length) // size):
                self.mapped_through[(guest, index)] = fh
        elif op == "DESTROY":
            self.destroyed.add(args[0])


def _window_byte(state: State, guest: int, woffset: int) -> tuple[int, int] | None:
    config = state.config
    if not 0 <= woffset < config.window_size:
        return None
    mapped = state.guests[guest].window[woffset // config.range_size]
    if mapped is None or mapped.ino not in state.inodes:
        return None
    return mapped.ino, mapped.foffset + woffset % config.range_size


def _as_result(check: Check) -> object | None:
    obs = check.observed
    if obs.kind == "fault":
        return Fault()
    if obs.kind == "err":
        try:
            return Err(Errno(obs.value))
        except ValueError:
            return None
    if isinstance(obs.value, (bytes, int)) or obs.value is None:
        return Ok(obs.value)
    return None


def _predicates(state: State, check: Check) -> set[str]:
    observed = _as_result(check)
    if observed is None:
        return set()
    after = state
    for outcome in REGISTRY[check.op](state, *check.args):
        if type(outcome.result) is type(observed):
            after = outcome.state
            break
    try:
        return set(step_violations(Step(state, check.op, check.args, Outcome(observed, after))))
    except (KeyError, IndexError, TypeError, AttributeError):
        return set()  # a predicate that cannot read this observation says nothing


def _first_difference(got: bytes, want: bytes) -> int | None:
    for k, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return k
    return None if len(got) == len(want) else min(len(got), len(want))


def _data_property(state: State, check: Check, history: History) -> str | None:
    """A wrong byte: named after whoever last wrote it (a peer's store, the guest's own
    store or WRITE, or the host)."""
    wants = [r.value for r in check.allowed if isinstance(r, Ok) and isinstance(r.value, bytes)]
    got = check.observed.value
    if not wants or check.observed.kind != "ok" or not isinstance(got, bytes):
        return None
    k = _first_difference(got, wants[0])
    if k is None:
        return None
    if check.op == "LOAD":
        guest = check.args[0]
        where = _window_byte(state, guest, check.args[1] + k)
    elif check.op == "READ":
        guest = check.args[0]
        handle = state.guests[guest].handles.get(check.args[1])
        where = (handle.ino, check.args[2] + k) if handle else None
    else:  # host.read
        guest = -1
        found = _host_ino(state, check.args[0])
        where = (found, check.args[1] + k) if found else None
    writer = history.writer.get(where) if where else None
    if writer is None:
        return "COH-READ" if check.op != "host.read" else "COH-WRITE"
    how, by = writer
    if by == guest or check.op == "host.read":
        return "COH-WRITE"
    return "COH-PEER" if how == "store" else "COH-READ"


def _host_ino(state: State, path: bytes) -> int | None:
    found = resolve_path(state, path)
    return None if isinstance(found, frozenset) else found


def _errnos(check: Check) -> set[Errno]:
    return {r.errno for r in check.allowed if isinstance(r, Err)}


def _lifetime(state: State, check: Check, history: History) -> bool:
    """A data access that failed where the spec says the file lives on: after RELEASE of
    the handle a mapping came through, or after the host unlinked the name."""
    if check.observed.kind == "ok" or not any(isinstance(r, Ok) for r in check.allowed):
        return False
    if check.op in ("LOAD", "STORE"):
        guest, woffset = check.args[0], check.args[1]
        index = woffset // state.config.range_size
        mapped = state.guests[guest].window[index] if 0 <= index < len(
            state.guests[guest].window) else None
        fh = history.mapped_through.get((guest, index))
        released = fh is not None and fh not in state.guests[guest].handles
        return mapped is not None and (released or state.inodes[mapped.ino].nlink == 0)
    if check.op in ("READ", "WRITE", "FSYNC", "FLUSH", "GETATTR", "SETUPMAPPING"):
        guest = check.args[0]
        if check.op == "GETATTR":
            node = state.guests[guest].nodes.get(check.args[1])
            return node is not None and state.inodes[node.ino].nlink == 0
        handle = state.guests[guest].handles.get(check.args[1])
        return handle is not None and state.inodes[handle.ino].nlink == 0
    return False


def attribute(state: State, bindings: Bindings, check: Check, history: History) -> set[str]:
    """The properties a departing step breaks (never empty)."""
    op, args = check.op, check.args
    errnos = _errnos(check)
    guest = args[0] if REGISTRY[op].params and REGISTRY[op].params[0].kind == "GuestId" else None
    if guest is not None and history.destroyed - {guest} and check.observed.kind != "ok" \
            and any(isinstance(r, Ok) for r in check.allowed):
        return {"RECLAIM"}
    if _lifetime(state, check, history):
        return {"LIFETIME"}
    found = _predicates(state, check)
    if state.config.read_only and Errno.EROFS in errnos and check.observed.kind == "ok":
        found.add("RO-EXPORT")  # a write path the read-only export should not have had
    if state.config.read_only and check.observed == Observed("err", Errno.EROFS) and \
            Errno.EROFS not in errnos:
        found.add("RO-EXPORT")  # refused as a write what the spec says writes nothing
    if op in ("LOAD", "READ", "host.read"):
        data = _data_property(state, check, history)
        if data:
            found = (found - {"COH-READ"}) | {data}
    if found:
        return found
    if state.config.read_only and Errno.EROFS in errnos:
        return {"RO-EXPORT"}
    if Errno.EBADF in errnos and any(p.kind == "Fh" for p in REGISTRY[op].params):
        session = state.guests[guest] if guest is not None else None
        if session is not None and args[1] in session.handles and op in ("WRITE", "READ"):
            return {"ACCESS-MODE"}
        return {"HANDLE"}
    if Errno.EACCES in errnos and op == "SETUPMAPPING":
        return {"ACCESS-MODE"}
    if errnos & {Errno.ESTALE} or (guest is not None and _stale_nodeid(state, op, args)):
        return {"NODEID"}
    if op in ("OPEN", "OPENDIR") and check.observed.kind == "ok" and any(
            isinstance(r, Ok) for r in check.allowed):
        return {"HANDLE"}
    if op == "CREATE" and isinstance(check.observed.value, tuple) and any(
            isinstance(r, Ok) and bindings.bind_handle(guest, HandleKind.FILE,
                                                       check.observed.value[1], r.value.fh)
            is None for r in check.allowed):
        return {"HANDLE"}
    if _confine(state, op, args, errnos):
        return {"CONFINE"}
    if op in _ATTR_OPS and check.observed.kind == "ok" and any(
            isinstance(r, Ok) for r in check.allowed):
        return {"NODEID"} if _ids_confused(check, bindings, guest) else {"COH-META"}
    if op in _NAMESPACE_OPS or op in ("OPEN", "CREATE") or op.startswith("host."):
        return {"NAMESPACE"}
    if op in ("SETUPMAPPING", "REMOVEMAPPING"):
        return {"LIFETIME"}  # the window's ranges and what keeps them
    if op == "FSYNC":
        return {"DURABLE"}
    if op in ("LOAD", "STORE"):
        return {"EOF-FAULT"}
    if op in _WRITE_PATH and state.config.read_only:
        return {"RO-EXPORT"}
    return {"COH-READ"} if op == "READ" else {"HANDLE"}


def _stale_nodeid(state: State, op: str, args: tuple) -> bool:
    params = REGISTRY[op].params
    nodes = state.guests[args[0]].nodes
    return any(p.kind == "NodeId" and a not in nodes for p, a in zip(params, args, strict=True))


def _ids_confused(check: Check, bindings: Bindings, guest: int | None) -> bool:
    """The target answered with a nodeid or inode number already bound to something else
    than what the spec says this answer names."""
    got = check.observed.value
    for want in (r.value for r in check.allowed if isinstance(r, Ok)):
        entry = want.entry if isinstance(want, Created) else want
        attr = entry.attr if isinstance(entry, Entry) else entry
        if isinstance(entry, Entry) and isinstance(got, (t.Entry, tuple)):
            seen = got[0] if isinstance(got, tuple) else got
            if bindings.bind("node", guest, seen.nodeid, entry.nodeid) is None:
                return True
            got = seen.attr
        if isinstance(attr, Attr) and hasattr(got, "st_ino"):
            if bindings.bind("ino", None, got.st_ino, attr.ino) is None:
                return True
    return False


def _confine(state: State, op: str, args: tuple, errnos: set[Errno]) -> bool:
    if op == "LOOKUP" and args[2] in (b".", b".."):
        return True
    if op in ("OPEN", "CREATE", "READLINK") and errnos & {Errno.ELOOP, Errno.ENXIO}:
        return True
    if op == "OPEN":
        node = state.guests[args[0]].nodes.get(args[1])
        return node is not None and state.inodes[node.ino].kind in (FileKind.LNK, FileKind.FIFO)
    return False
