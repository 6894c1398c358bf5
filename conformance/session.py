"""Running one target and the spec side by side, step by step (SibylFS-style).

A `Session` holds one running target, its guests, and a small set of *branches*: spec
states that explain everything observed so far, each with its bindings between the
target's identifiers and the spec's. A step runs an operation on the target, asks the
spec for the allowed outcomes in every branch, and keeps the outcomes that match the
observation. No branch left means the target departed from the spec at this step.

Identifiers: the spec numbers nodeids, handles and inodes canonically; the target uses
its own. A binding is made the first time an identifier appears, and must stay a
bijection: a target that hands out a number already meaning something else (a reused
handle, a nodeid that now names another inode) has no matching branch.
"""

from __future__ import annotations

import errno as errnos
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace

from pagefs.conformance import target as t
from pagefs.spec import REGISTRY, ROOT_NODEID, Config, Err, Fault, Ok, State, initial_state
from pagefs.spec.datatypes import Attr, Created, DirEntry, Entry, FileKind, FrozenMap, StatFs

# Identifiers the target never handed out are sent as these, far from any real one.
UNBOUND_BASE = 1 << 40

_KINDS = {stat.S_IFREG: FileKind.REG, stat.S_IFDIR: FileKind.DIR, stat.S_IFLNK: FileKind.LNK,
          stat.S_IFIFO: FileKind.FIFO}


@dataclass(frozen=True)
class Observed:
    """What the target answered: ("ok", value), ("err", errno) or ("fault", None)."""

    kind: str
    value: object = None

    def __str__(self) -> str:
        if self.kind == "err":
            return f"Err({errnos.errorcode.get(int(self.value), self.value)})"  # type: ignore[arg-type]
        if self.kind == "fault":
            return "FAULT"
        return f"Ok({show(self.value)})"


@dataclass(frozen=True)
class Check:
    """One step: the operation, what the target did, what the spec allowed, and whether
    some branch explains it."""

    op: str
    args: tuple[object, ...]
    observed: Observed
    allowed: tuple[object, ...]  # spec results, across branches
    ok: bool

    def line(self) -> str:
        names = [p.name for p in REGISTRY[self.op].params]
        shown = ", ".join(f"{n}={show(a)}" for n, a in zip(names, self.args, strict=True)
                          if n != "guest")
        who = f"guest{self.args[0]} " if names and names[0] == "guest" else "host "
        text = f"{who}{self.op}({shown}) -> {self.observed}"
        if not self.ok:
            text += "   <-- spec allows: " + " | ".join(show(r) for r in self.allowed)
        return text


def show(value: object) -> str:
    """A short, readable rendering of values in traces."""
    if isinstance(value, bytes):
        if len(value) > 24:
            return repr(value[:16]) + f"...({len(value)} bytes)"
        return repr(value)
    if isinstance(value, os.stat_result):
        return (f"stat(ino={value.st_ino}, mode={value.st_mode:o}, nlink={value.st_nlink}, "
                f"size={value.st_size}, mtime_ns={value.st_mtime_ns})")
    if isinstance(value, Err):
        return f"Err({value.errno.name})"
    if isinstance(value, Fault):
        return "FAULT"
    if isinstance(value, Ok):
        return f"Ok({show(value.value)})"
    if isinstance(value, Attr):
        return (f"Attr(ino={value.ino}, {value.kind.value}, mode={value.mode:o}, "
                f"nlink={value.nlink}, size={value.size}, mtime=v{value.mtime.version})")
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (DirEntry, t.DirEntry)) for v in value):
        return "[" + ", ".join(show(v.name) for v in value) + "]"
    return repr(value)


class Bindings:
    """Target id <-> spec id, per kind ("node"/"fh" per guest, "ino" shared), and the
    real mtime each (inode, mtime version) showed. Immutable: binding returns a copy."""

    __slots__ = ("_map",)

    def __init__(self, items: FrozenMap | None = None) -> None:
        self._map: FrozenMap = items if items is not None else FrozenMap()

    def __hash__(self) -> int:
        return hash(self._map)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bindings) and self._map == other._map

    def to_target(self, kind: str, guest: int | None, spec_id: int) -> int:
        return self._map.get(("s", kind, guest, spec_id), UNBOUND_BASE + spec_id)

    def bind(self, kind: str, guest: int | None, target_id: int, spec_id: int) -> Bindings | None:
        """The bindings with target_id <-> spec_id, or None if either is bound elsewhere."""
        have_spec = self._map.get(("t", kind, guest, target_id))
        have_target = self._map.get(("s", kind, guest, spec_id))
        if have_spec == spec_id and have_target == target_id:
            return self
        if have_spec is not None or have_target is not None:
            return None
        items = self._map.set(("t", kind, guest, target_id), spec_id)
        return Bindings(items.set(("s", kind, guest, spec_id), target_id))

    def bind_mtime(self, ino: int, version: int, ns: int) -> Bindings | None:
        """One mtime version shows one real time; a later version never an earlier one."""
        for key, seen in self._map.items():
            if key[0] == "m" and key[1] == ino:
                v = key[2]
                if (v == version and seen != ns) or (v < version and seen > ns) or (
                        v > version and seen < ns):
                    return None
        if ("m", ino, version) in self._map:
            return self
        return Bindings(self._map.set(("m", ino, version), ns))

    def keep(self, predicate: Callable[[tuple], bool]) -> Bindings:
        return Bindings(FrozenMap({k: v for k, v in self._map.items() if predicate(k)}))

    def forget_inodes(self, live: FrozenMap) -> Bindings:
        """Drop what binds inodes the spec has freed: the target may reuse their numbers."""
        def alive(k: tuple) -> bool:
            if k[0] == "m":
                return k[1] in live
            if k[1] == "ino":
                return (k[3] if k[0] == "s" else self._map[k]) in live
            return True
        return self.keep(alive)


def _match_attr(b: Bindings, want: Attr, st: os.stat_result) -> Bindings | None:
    if _KINDS.get(stat.S_IFMT(st.st_mode)) is not want.kind:
        return None
    if stat.S_IMODE(st.st_mode) != want.mode:
        return None
    if want.nlink is not None and st.st_nlink != want.nlink:
        return None
    if want.size is not None and st.st_size != want.size:
        return None
    if want.mtime.ns is not None and st.st_mtime_ns != want.mtime.ns:
        return None
    bound = b.bind("ino", None, st.st_ino, want.ino)
    return bound and bound.bind_mtime(want.ino, want.mtime.version, st.st_mtime_ns)


def _match_entry(b: Bindings, guest: int, want: Entry, got: t.Entry) -> Bindings | None:
    bound = b.bind("node", guest, got.nodeid, want.nodeid)
    return bound and _match_attr(bound, want.attr, got.attr)


def _match_value(b: Bindings, op: str, guest: int | None, want: object,
                 got: object) -> Bindings | None:
    if isinstance(want, Attr):
        return _match_attr(b, want, got) if isinstance(got, os.stat_result) else None
    if isinstance(want, Entry):
        return _match_entry(b, guest, want, got) if isinstance(got, t.Entry) else None  # type: ignore[arg-type]
    if isinstance(want, Created):
        if not isinstance(got, tuple):
            return None
        bound = _match_entry(b, guest, want.entry, got[0])  # type: ignore[arg-type]
        return bound and bound.bind("fh", guest, got[1], want.fh)
    if isinstance(want, StatFs):
        return b if getattr(got, "f_namemax", None) == want.namelen else None
    if isinstance(want, tuple):  # READDIR: the same names, each the right inode and kind
        if not isinstance(got, list) or sorted(e.name for e in got) != [e.name for e in want]:
            return None
        by_name = {e.name: e for e in got}
        for entry in want:
            seen = by_name[entry.name]
            if seen.type != stat.S_IFMT(_mode_of(entry.kind)) >> 12:
                return None
            b = b.bind("ino", None, seen.ino, entry.ino)  # type: ignore[assignment]
            if b is None:
                return None
        return b
    if op in ("OPEN", "OPENDIR"):
        return b.bind("fh", guest, got, want) if isinstance(got, int) else None  # type: ignore[arg-type]
    if op == "INIT":
        return b
    return b if got == want else None


def _mode_of(kind: FileKind) -> int:
    return next(m for m, k in _KINDS.items() if k is kind)


def match(b: Bindings, op: str, guest: int | None, result: object,
          observed: Observed) -> Bindings | None:
    """The bindings under which `observed` is the spec's `result`, or None."""
    if isinstance(result, Err):
        return b if observed.kind == "err" and observed.value == result.errno else None
    if isinstance(result, Fault):
        return b if observed.kind == "fault" else None
    assert isinstance(result, Ok)
    if observed.kind != "ok":
        return None
    return _match_value(b, op, guest, result.value, observed.value)


def _call_host(host: t.Host, op: str, a: tuple) -> object:
    verb = op.removeprefix("host.")
    if verb in ("create", "mkdir"):
        return getattr(host, verb)(a[0], a[1])
    if verb == "mkfifo":
        return host.mkfifo(a[0], a[1])
    return getattr(host, verb)(*a)


def _call_guest(g: t.Guest, op: str, a: tuple) -> object:
    if op == "SETATTR":
        return g.setattr(a[0], None, size=a[1], mode=a[2], mtime_ns=a[3])
    if op == "GETATTR":
        return g.getattr(a[0])
    if op == "FSYNC":
        return g.fsync(a[0], a[1])
    return getattr(g, op.lower())(*a)


class Session:
    """One running target beside the spec."""

    def __init__(self, factory: t.TargetFactory, config: Config, *, read_only: bool = False,
                 guests: int = 1) -> None:
        self.config = replace(config, read_only=read_only, guests=guests)
        os.umask(0)  # modes are the spec's exactly, for the host and for syscall-view guests
        self.target = factory.start(read_only=read_only)
        try:
            self.guests: list[t.Guest | None] = [self.target.connect() for _ in range(guests)]
        except BaseException:
            self.target.close()
            raise
        start = Bindings()
        for g in range(guests):
            start = start.bind("node", g, t.ROOT_NODEID, ROOT_NODEID)
        self.branches: list[tuple[State, Bindings]] = [(initial_state(self.config), start)]

    @property
    def state(self) -> State:
        """A spec state that explains everything so far (the first branch)."""
        return self.branches[0][0]

    def close(self) -> None:
        self.target.close()

    def _target_args(self, op: str, args: tuple) -> tuple:
        """Translate spec ids in the arguments to the target's, via the first branch."""
        params = REGISTRY[op].params
        guest = args[0] if params and params[0].kind == "GuestId" else None
        b = self.branches[0][1]
        out = []
        for p, a in zip(params, args, strict=True):
            if p.kind == "NodeId":
                a = b.to_target("node", guest, a)
            elif p.kind == "Fh":
                a = b.to_target("fh", guest, a)
            out.append(a)
        return tuple(out[1:]) if guest is not None else tuple(out)

    def _execute(self, op: str, args: tuple) -> Observed:
        operation = REGISTRY[op]
        targs = self._target_args(op, args)
        try:
            if operation.kind == "host":
                value = _call_host(self.target.host, op, targs)
            elif op == "INIT":
                if self.guests[args[0]] is not None:
                    raise OSError(errnos.EPROTO, "the harness holds a live session")
                self.guests[args[0]] = self.target.connect()
                value = None
            else:
                guest = self.guests[args[0]]
                if guest is None:
                    raise OSError(errnos.EIO, "no session (after DESTROY)")
                if op == "DESTROY":
                    guest.close()
                    self.guests[args[0]] = None
                    value = None
                else:
                    value = _call_guest(guest, op, targs)
        except OSError as exc:
            if exc.errno is None:  # a harness or set-up failure, not an answer
                raise
            if operation.kind == "memory" and exc.errno == errnos.EFAULT:
                return Observed("fault")
            return Observed("err", exc.errno)
        return Observed("ok", value)

    def step(self, op: str, args: tuple) -> Check:
        """Run `op(*args)` (spec ids) on the target and keep the branches that explain it."""
        observed = self._execute(op, args)
        guest = args[0] if REGISTRY[op].params and REGISTRY[op].params[0].kind == "GuestId" \
            else None
        allowed: list[object] = []
        survivors: dict[tuple[State, Bindings], None] = {}
        for state, b in self.branches:
            for outcome in REGISTRY[op](state, *args):
                if outcome.result not in allowed:
                    allowed.append(outcome.result)
                bound = match(b, op, guest, outcome.result, observed)
                if bound is None:
                    continue
                if op == "DESTROY":  # a new connection numbers afresh
                    bound = bound.keep(lambda k, g=guest: k[0] == "m" or k[2] != g)
                    bound = bound.bind("node", guest, t.ROOT_NODEID, ROOT_NODEID)
                bound = bound.forget_inodes(outcome.state.inodes)
                survivors.setdefault((outcome.state, bound), None)
        check = Check(op, tuple(args), observed, tuple(allowed), bool(survivors))
        if survivors:
            self.branches = list(survivors)
        return check

