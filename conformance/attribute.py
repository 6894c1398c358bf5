"""Which named property a departure breaks.

A step the spec cannot explain is first put to the spec's own property predicates
(`pagefs.spec.properties.step_violations`), with the observed result in place of an
allowed one. What they cannot judge -- the host's view after a guest store, attributes,
errnos, identifier confusion -- is named here, from what the operation's declaration
says of it (`operations.py`: what it reads, returns, goes through, how it confines), the
errnos the spec allowed, and a little history the machine keeps (who last wrote a byte,
which handle a mapping came through).

`RULES` is the order of the questions asked; the first that names a property decides,
and an operation's declared fallback answers when none does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from pagefs.conformance import target as t
from pagefs.conformance.operations import BY_NAME, Operation, Returns, Subject
from pagefs.conformance.session import Bindings, Check, Observed
from pagefs.spec import REGISTRY, Err, Errno, Fault, Ok, Outcome, State
from pagefs.spec.datatypes import Attr, Created, Entry, FileKind, HandleKind
from pagefs.spec.properties import Step, step_violations
from pagefs.spec.tree import resolve_path


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


def _as_result(check: Check) -> Ok | Err | Fault | None:
    obs = check.observed
    if obs.kind == "fault":
        return Fault()
    if obs.kind == "err":
        try:
            return Err(Errno(obs.value)) if isinstance(obs.value, int) else None
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
    if where is not None and _foreign(state, where[0], where[1], got[k:]):
        return "ISOLATION"
    writer = history.writer.get(where) if where else None
    if writer is None:
        return "COH-READ" if check.op != "host.read" else "COH-WRITE"
    how, by = writer
    if by == guest or check.op == "host.read":
        return "COH-WRITE"
    return "COH-PEER" if how == "store" else "COH-READ"


def _foreign(state: State, ino: int, offset: int, got: bytes) -> bool:
    """The wrong bytes are, from there on, another file's bytes at that offset (a freed
    page reused for another file, a handle confused with another): ISOLATION."""
    if not got.strip(b"\0"):
        return False  # zeros belong to every file
    return any(i != ino and inode.kind is FileKind.REG and
               bytes(inode.data[offset:offset + len(got)]) == got
               for i, inode in state.inodes.items())


def _host_ino(state: State, path: bytes) -> int | None:
    found = resolve_path(state, path)
    return None if isinstance(found, frozenset) else found


def _errnos(check: Check) -> set[Errno]:
    return {r.errno for r in check.allowed if isinstance(r, Err)}


@dataclass(frozen=True)
class _Departure:
    """One departing step, with what the rules ask of it."""

    state: State
    bindings: Bindings
    check: Check
    history: History
    op: Operation
    guest: int | None
    errnos: set[Errno]

    @property
    def both_ok(self) -> bool:
        """The target succeeded and the spec allowed a success, yet they differ."""
        return self.check.observed.kind == "ok" and self.allows_ok

    @property
    def allows_ok(self) -> bool:
        return any(isinstance(r, Ok) for r in self.check.allowed)


def _reclaim(d: _Departure) -> set[str] | None:
    """A guest failed where the spec says it works, after another guest was destroyed."""
    if d.guest is not None and d.history.destroyed - {d.guest} and \
            d.check.observed.kind != "ok" and d.allows_ok:
        return {"RECLAIM"}
    return None


def _lifetime(d: _Departure) -> set[str] | None:
    """A data access that failed where the spec says the file lives on: after RELEASE of
    the handle a mapping came through, or after the host unlinked the name."""
    if d.op.lifetime is None or d.check.observed.kind == "ok" or not d.allows_ok:
        return None
    state, args = d.state, d.check.args
    session = state.guests[args[0]]
    if d.op.lifetime is Subject.WINDOW:
        index = args[1] // state.config.range_size
        mapped = session.window[index] if 0 <= index < len(session.window) else None
        fh = d.history.mapped_through.get((args[0], index))
        released = fh is not None and fh not in session.handles
        lives = mapped is not None and (released or state.inodes[mapped.ino].nlink == 0)
    else:
        held = session.nodes if d.op.lifetime is Subject.NODE else session.handles
        found = held.get(args[1])
        lives = found is not None and state.inodes[found.ino].nlink == 0
    return {"LIFETIME"} if lives else None


def _judged_by_predicates(d: _Departure) -> set[str] | None:
    """The spec's own predicates, the read-only export's refusals, and the provenance of
    a wrong byte."""
    found = _predicates(d.state, d.check)
    if d.state.config.read_only:
        if Errno.EROFS in d.errnos and d.check.observed.kind == "ok":
            found.add("RO-EXPORT")  # a write path the read-only export should not have had
        if d.check.observed == Observed("err", Errno.EROFS) and Errno.EROFS not in d.errnos:
            found.add("RO-EXPORT")  # refused as a write what the spec says writes nothing
    if d.op.reads_bytes:
        data = _data_property(d.state, d.check, d.history)
        if data:
            found = (found - {"COH-READ"}) | {data}
    return found or None


def _read_only(d: _Departure) -> set[str] | None:
    return {"RO-EXPORT"} if d.state.config.read_only and Errno.EROFS in d.errnos else None


def _bad_handle(d: _Departure) -> set[str] | None:
    """EBADF allowed for a request on a handle: the wrong handle, or (on a live one) the
    wrong access mode."""
    if Errno.EBADF not in d.errnos or not any(p.kind == "Fh" for p in REGISTRY[d.op.name].params):
        return None
    session = d.state.guests[d.guest] if d.guest is not None else None
    if d.op.access_errno is Errno.EBADF and session is not None and \
            d.check.args[1] in session.handles:
        return {"ACCESS-MODE"}
    return {"HANDLE"}


def _access_mode(d: _Departure) -> set[str] | None:
    if d.op.access_errno is not None and d.op.access_errno in d.errnos:
        return {"ACCESS-MODE"}
    return None


def _stale(d: _Departure) -> set[str] | None:
    if d.errnos & {Errno.ESTALE} or (d.guest is not None and _stale_nodeid(d.state, d.check)):
        return {"NODEID"}
    return None


def _new_handle(d: _Departure) -> set[str] | None:
    """A new handle the spec does not allow: a number in use, or given before."""
    if d.op.returns is Returns.HANDLE and d.both_ok:
        return {"HANDLE"}
    got = d.check.observed.value
    if d.op.returns is Returns.CREATED and isinstance(got, tuple) and any(
            isinstance(r, Ok) and isinstance(r.value, Created) and
            d.bindings.bind_handle(d.guest, HandleKind.FILE, got[1], r.value.fh) is None
            for r in d.check.allowed):
        return {"HANDLE"}
    return None


def _confined(d: _Departure) -> set[str] | None:
    if d.op.confine is not None and d.op.confine(d.state, d.check.args, d.errnos):
        return {"CONFINE"}
    return None


_PERMISSION = frozenset({Errno.EACCES, Errno.EPERM})


def _ownership(d: _Departure) -> set[str] | None:
    """Where guests act as chosen callers: a permission errno the spec allowed or the
    target answered, or attributes whose owner, group or permission bits differ."""
    if not d.state.config.callers:
        return None
    observed = d.check.observed
    if d.errnos & _PERMISSION or (observed.kind == "err" and observed.value in _PERMISSION):
        return {"OWNERSHIP"}
    if d.both_ok and d.op.returns in (Returns.ATTR, Returns.ENTRY, Returns.CREATED):
        got = observed.value[0] if isinstance(observed.value, tuple) else observed.value
        got = getattr(got, "attr", got)
        for want in (r.value for r in d.check.allowed if isinstance(r, Ok)):
            want = want.entry if isinstance(want, Created) else want
            want = want.attr if isinstance(want, Entry) else want
            if isinstance(want, Attr) and isinstance(got, os.stat_result) and (
                    (got.st_uid, got.st_gid, got.st_mode & 0o7777)
                    != (want.uid, want.gid, want.mode)):
                return {"OWNERSHIP"}
    return None


def _attributes(d: _Departure) -> set[str] | None:
    """Both succeeded with different attributes: confused identifiers, or stale ones."""
    if d.op.returns in (Returns.ATTR, Returns.ENTRY, Returns.CREATED) and d.both_ok:
        return {"NODEID"} if _ids_confused(d.check, d.bindings, d.guest) else {"COH-META"}
    return None


# The questions, in the order they are asked; the first that names a property decides.
RULES: tuple[Callable[[_Departure], set[str] | None], ...] = (
    _lifetime, _reclaim, _judged_by_predicates, _read_only, _bad_handle, _access_mode,
    _stale, _new_handle, _confined, _ownership, _attributes,
)


def attribute(state: State, bindings: Bindings, check: Check, history: History) -> set[str]:
    """The properties a departing step breaks (never empty)."""
    op = BY_NAME[check.op]
    params = REGISTRY[check.op].params
    guest = check.args[0] if params and params[0].kind == "GuestId" else None
    departure = _Departure(state, bindings, check, history, op, guest, _errnos(check))
    for question in RULES:
        named = question(departure)
        if named:
            return named
    if state.config.read_only and op.fallback_read_only:
        return {op.fallback_read_only}
    return {op.fallback}


def _stale_nodeid(state: State, check: Check) -> bool:
    params = REGISTRY[check.op].params
    nodes = state.guests[check.args[0]].nodes
    return any(p.kind == "NodeId" and a not in nodes
               for p, a in zip(params, check.args, strict=True))


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
