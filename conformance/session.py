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
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from pagefs.conformance import target as t
from pagefs.spec import REGISTRY, ROOT_NODEID, Config, Err, Fault, Ok, State, initial_state
from pagefs.spec.datatypes import (
    ROOT_CALLER,
    Attr,
    Created,
    DirEntry,
    Entry,
    FileKind,
    FrozenMap,
    HandleKind,
    Mtime,
    StatFs,
)
from pagefs.spec.times import TimeMap

# Identifiers the target never handed out are sent as these, far from any real one.
UNBOUND_BASE = 1 << 40

_KINDS = {stat.S_IFREG: FileKind.REG, stat.S_IFDIR: FileKind.DIR, stat.S_IFLNK: FileKind.LNK,
          stat.S_IFIFO: FileKind.FIFO, stat.S_IFSOCK: FileKind.SOCK}


@dataclass(frozen=True)
class Observed:
    """What the target answered: ("ok", value), ("err", errno) or ("fault", None)."""

    kind: str
    value: object = None
    note: str = field(default="", compare=False)  # what the target adds (a dead back-end)

    def __str__(self) -> str:
        if self.kind == "err":
            code = self.value if isinstance(self.value, int) else -1
            return f"Err({errnos.errorcode.get(code, self.value)})"
        if self.kind == "fault":
            return "FAULT"
        return f"Ok({show(self.value)})"


@dataclass(frozen=True)
class Check:
    """One step: the operation, what the target did, what the spec allowed, and whether
    some branch explains it."""

    op: str
    args: tuple[Any, ...]  # a spec call's arguments, of the kinds its Params name
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
        if self.observed.note:
            text += f"   [{self.observed.note}]"
        return text


def show(value: object) -> str:
    """A short, readable rendering of values in traces."""
    if isinstance(value, bytes):
        if len(value) > 24:
            return repr(value[:16]) + f"...({len(value)} bytes)"
        return repr(value)
    if isinstance(value, os.stat_result):
        kind = _KINDS.get(stat.S_IFMT(value.st_mode))
        return (f"stat(ino={value.st_ino}, {kind.value if kind else '?'}, "
                f"mode={stat.S_IMODE(value.st_mode):o}, nlink={value.st_nlink}, "
                f"size={value.st_size}, mtime={value.st_mtime_ns}, "
                f"owner={value.st_uid}:{value.st_gid})")
    if isinstance(value, (t.Entry, Entry)):
        return f"Entry(nodeid={value.nodeid}, {show(value.attr)})"
    if isinstance(value, Created):
        return f"Created({show(value.entry)}, fh={value.fh})"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], t.Entry):
        return f"Created({show(value[0])}, fh={value[1]})"
    if isinstance(value, Err):
        return f"Err({value.errno.name})"
    if isinstance(value, Fault):
        return "FAULT"
    if isinstance(value, Ok):
        return f"Ok({show(value.value)})"
    if isinstance(value, Attr):
        return (f"Attr(ino={value.ino}, {value.kind.value}, mode={value.mode:o}, "
                f"nlink={value.nlink}, size={value.size}, mtime=v{value.mtime.version}, "
                f"owner={value.uid}:{value.gid})")
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (DirEntry, t.DirEntry)) for v in value):
        return "[" + ", ".join(show(v.name) for v in value) + "]"
    return repr(value)


class Bindings:
    """Target id <-> spec id, per kind ("node"/"fh" per guest, "ino" shared; a target's
    handle is (file or directory, number), as FUSE's opcodes keep the two apart), and the
    real mtimes seen (the spec's `TimeMap`). Immutable: binding returns a copy."""

    __slots__ = ("_ids", "times")

    def __init__(self, ids: FrozenMap | None = None, times: TimeMap | None = None) -> None:
        self._ids: FrozenMap = ids if ids is not None else FrozenMap()
        self.times = times if times is not None else TimeMap()

    def __hash__(self) -> int:
        return hash((self._ids, self.times))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bindings) and (self._ids, self.times) == (other._ids,
                                                                            other.times)

    def to_target(self, kind: str, guest: int | None, spec_id: int) -> int:
        return self._ids.get(("s", kind, guest, spec_id), UNBOUND_BASE + spec_id)

    def to_spec(self, kind: str, guest: int | None, target_id: int) -> int | None:
        return self._ids.get(("t", kind, guest, target_id))

    def bind(self, kind: str, guest: int | None, target_id: object,
             spec_id: int) -> Bindings | None:
        """The bindings with target_id <-> spec_id, or None if either is bound elsewhere."""
        have_spec = self._ids.get(("t", kind, guest, target_id))
        have_target = self._ids.get(("s", kind, guest, spec_id))
        if have_spec == spec_id and have_target == target_id:
            return self
        if have_spec is not None or have_target is not None:
            return None
        ids = self._ids.set(("t", kind, guest, target_id), spec_id)
        return Bindings(ids.set(("s", kind, guest, spec_id), target_id), self.times)

    def handle_to_target(self, guest: int | None, kind: HandleKind, spec_fh: int) -> int:
        """The number to send for spec handle `spec_fh` in a request on `kind` handles.
        A handle of the other kind goes as its own number (a target that confuses the
        kinds is caught), unless that number names one of this kind: then, as a number
        the target never gave, since FUSE would read it as that other handle."""
        bound = self._ids.get(("s", "fh", guest, spec_fh))
        if bound is None:
            return UNBOUND_BASE + spec_fh
        their_kind, number = bound
        if their_kind is kind or ("t", "fh", guest, (kind, number)) not in self._ids:
            return number
        return UNBOUND_BASE + spec_fh

    def bind_handle(self, guest: int | None, kind: HandleKind, target_fh: int,
                    spec_fh: int) -> Bindings | None:
        """File and directory handles are numbered apart: the opcode names the kind."""
        return self.bind("fh", guest, (kind, target_fh), spec_fh)

    def observe_mtime(self, ino: int, mtime: Mtime, ns: int) -> Bindings | None:
        times = self.times.observe(ino, mtime, ns)
        return None if times is None else Bindings(self._ids, times)

    def without_guest(self, guest: int | None) -> Bindings:
        """A guest reconnected: its nodeids and handles start afresh (root bound again)."""
        ids = FrozenMap({k: v for k, v in self._ids.items() if k[2] != guest})
        fresh = Bindings(ids, self.times)
        return fresh.bind("node", guest, t.ROOT_NODEID, ROOT_NODEID) or fresh

    def forget_inodes(self, live: Container[int]) -> Bindings:
        """Drop what binds inodes the spec has freed: the target may reuse their numbers."""
        def alive(k: tuple, v: int) -> bool:
            return k[1] != "ino" or (k[3] if k[0] == "s" else v) in live
        ids = FrozenMap({k: v for k, v in self._ids.items() if alive(k, v)})
        seen = FrozenMap({k: v for k, v in self.times.seen.items() if k[0] in live})
        if len(ids) == len(self._ids) and len(seen) == len(self.times.seen):
            return self
        return Bindings(ids, TimeMap(seen))


ATTRS, BYTES, OWNERS = "attrs", "bytes", "owners"
"""Aspects a session may judge loosely: attributes (mode, size, link count, mtime), data
bytes, and owners (uid and gid). A run that judges one property compares what belongs to
other properties loosely, so that a departure there (judged by its own run) does not end
this one; owners are judged only where guests act as chosen callers (OWNERSHIP)."""


def initial_bindings(guests: int) -> Bindings:
    """Every guest starts holding the root, nodeid 1 on both sides."""
    b = Bindings()
    for g in range(guests):
        b = b.bind("node", g, t.ROOT_NODEID, ROOT_NODEID) or b
    return b


def _match_attr(b: Bindings, want: Attr, st: os.stat_result,
                loose: frozenset[str]) -> Bindings | None:
    if _KINDS.get(stat.S_IFMT(st.st_mode)) is not want.kind:
        return None
    if ATTRS in loose:
        return b.bind("ino", None, st.st_ino, want.ino)
    if stat.S_IMODE(st.st_mode) != want.mode:
        return None
    if want.nlink is not None and st.st_nlink != want.nlink:
        return None
    if want.size is not None and st.st_size != want.size:
        return None
    if OWNERS not in loose and want.uid is not None and (st.st_uid, st.st_gid) != (
            want.uid, want.gid):
        return None
    bound = b.bind("ino", None, st.st_ino, want.ino)
    return bound and bound.observe_mtime(want.ino, want.mtime, st.st_mtime_ns)


def _match_entry(b: Bindings, guest: int, want: Entry, got: t.Entry,
                 loose: frozenset[str]) -> Bindings | None:
    bound = b.bind("node", guest, got.nodeid, want.nodeid)
    return bound and _match_attr(bound, want.attr, got.attr, loose)


def _match_value(b: Bindings, op: str, guest: int | None, want: object,
                 got: object, loose: frozenset[str]) -> Bindings | None:
    if isinstance(want, Attr):
        return _match_attr(b, want, got, loose) if isinstance(got, os.stat_result) else None
    if isinstance(want, Entry):
        if not isinstance(got, t.Entry):
            return None
        return _match_entry(b, guest, want, got, loose)  # type: ignore[arg-type]
    if isinstance(want, Created):
        if not isinstance(got, tuple):
            return None
        bound = _match_entry(b, guest, want.entry, got[0], loose)  # type: ignore[arg-type]
        return bound and bound.bind_handle(guest, HandleKind.FILE, got[1], want.fh)
    if isinstance(want, StatFs):
        return b if getattr(got, "f_namemax", None) == want.namelen else None
    if op == "LISTXATTR":  # names in the spec's order (sorted), or the list's length
        return b if got == want else None
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
        if not isinstance(got, int):
            return None
        return b.bind_handle(guest, handle_kind(op), got, want)  # type: ignore[arg-type]
    if op == "INIT":
        return b
    if BYTES in loose and isinstance(want, bytes) and isinstance(got, bytes):
        return b
    return b if got == want else None


def handle_kind(op: str) -> HandleKind:
    """Which kind of handle a request names or opens (FUSE: the opcode says)."""
    return HandleKind.DIR if op in ("OPENDIR", "READDIR", "RELEASEDIR") else HandleKind.FILE


def _mode_of(kind: FileKind) -> int:
    return next(m for m, k in _KINDS.items() if k is kind)


def match(b: Bindings, op: str, guest: int | None, result: object,
          observed: Observed, loose: frozenset[str] = frozenset()) -> Bindings | None:
    """The bindings under which `observed` is the spec's `result`, or None."""
    if isinstance(result, Err):
        return b if observed.kind == "err" and observed.value == result.errno else None
    if isinstance(result, Fault):
        return b if observed.kind == "fault" else None
    assert isinstance(result, Ok)
    if observed.kind != "ok":
        return None
    return _match_value(b, op, guest, result.value, observed.value, loose)


@contextmanager
def exact_modes() -> Iterator[None]:
    """Modes are the spec's exactly while the suite acts on a target (the host's own
    creations, a syscall-view guest's, a daemon started for a case), and the user's
    umask everywhere else: reports and whatever else shares the process keep it."""
    saved = os.umask(0)
    try:
        yield
    finally:
        os.umask(saved)


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
                 guests: int = 1, loose: frozenset[str] = frozenset()) -> None:
        self.loose = loose if config.callers else loose | {OWNERS}
        with exact_modes():
            self.target = factory.start(read_only=read_only)
        ranges = self.target.window_size // config.range_size or config.window_ranges
        self.config = replace(config, read_only=read_only, guests=guests, window_ranges=ranges)
        try:
            with exact_modes():
                self.guests: list[t.Guest | None] = [self._connect(g)
                                                     for g in range(guests)]
        except BaseException:
            self.target.close()
            raise
        self.branches: list[tuple[State, Bindings]] = [(initial_state(self.config),
                                                         initial_bindings(guests))]

    def _connect(self, g: int) -> t.Guest:
        """Guest `g` connected, its requests acting as the caller the config names."""
        guest = self.target.connect()
        caller = self.config.caller(g)
        if caller != ROOT_CALLER:
            guest.act_as(caller.uid, caller.gid, caller.umask)
        return guest

    @property
    def state(self) -> State:
        """A spec state that explains everything so far (the first branch)."""
        return self.branches[0][0]

    def close(self) -> None:
        self.target.close()

    def _target_args(self, op: str, args: tuple, b: Bindings) -> tuple:
        """Translate spec ids in the arguments to the target's."""
        params = REGISTRY[op].params
        guest = args[0] if params and params[0].kind == "GuestId" else None
        out = []
        for p, a in zip(params, args, strict=True):
            if p.kind == "NodeId":
                a = b.to_target("node", guest, a)
            elif p.kind == "Fh":
                a = b.handle_to_target(guest, handle_kind(op), a)
            out.append(a)
        return tuple(out[1:]) if guest is not None else tuple(out)

    def execute(self, op: str, args: tuple, bindings: Bindings) -> Observed:
        """Run `op(*args)` (spec ids, translated through `bindings`) on the target only."""
        operation = REGISTRY[op]
        targs = self._target_args(op, args, bindings)
        return self._observe(lambda: self._execute(op, operation.kind, args, targs),
                             operation.kind)

    def _observe(self, call: Callable[[], Observed], kind: str) -> Observed:
        """What the target answered to `call`, its errors included."""
        try:
            with exact_modes():
                return call()
        except ConnectionError:
            # The back-end hung up (it died, or dropped us for this request): the guest
            # sees ENOTCONN from here on, which no rule of the spec allows. The target
            # may know why (a dead daemon's last words): the trace shows it here.
            return Observed("err", errnos.ENOTCONN, self.target.diagnostics() or "")
        except OSError as exc:
            if exc.errno is None:  # a harness or set-up failure, not an answer
                raise
            if kind == "memory" and exc.errno == errnos.EFAULT:
                return Observed("fault")
            return Observed("err", exc.errno)

    def _execute(self, op: str, kind: str, args: tuple, targs: tuple) -> Observed:
        if kind == "host":
            return Observed("ok", _call_host(self.target.host, op, targs))
        if op == "INIT":
            live = self.guests[args[0]]
            if live is not None:  # a guest reset without unmount: INIT on its connection
                live.reinit()
            else:
                self.guests[args[0]] = self._connect(args[0])
            return Observed("ok")
        guest = self.guests[args[0]]
        if guest is None and kind == "memory":
            return Observed("fault")  # a disconnected guest's window maps nothing
        if guest is None and op == "FORGET":
            return Observed("ok")  # FORGET has no reply: nothing can fail
        if guest is None:
            raise OSError(errnos.EIO, "no session (after DESTROY)")
        if op == "DESTROY":
            guest.close()
            self.guests[args[0]] = None
            return Observed("ok")
        return Observed("ok", _call_guest(guest, op, targs))

    def step(self, op: str, args: tuple) -> Check:
        """Run `op(*args)` (spec ids) on the target and keep the branches that explain it."""
        observed = self.execute(op, args, self.branches[0][1])
        guest = args[0] if REGISTRY[op].params and REGISTRY[op].params[0].kind == "GuestId" \
            else None
        allowed: list[object] = []
        survivors: dict[tuple[State, Bindings], None] = {}
        for state, b in self.branches:
            for outcome in REGISTRY[op](state, *args):
                if outcome.result not in allowed:
                    allowed.append(outcome.result)
                bound = match(b, op, guest, outcome.result, observed, self.loose)
                if bound is None:
                    continue
                # a new connection, or a new session on one, numbers afresh
                if op == "DESTROY" or (op == "INIT" and guest is not None
                                       and state.guests[guest].connected):
                    bound = bound.without_guest(guest)
                bound = bound.forget_inodes(outcome.state.inodes)
                survivors.setdefault((outcome.state, bound), None)
        check = Check(op, tuple(args), observed, tuple(allowed), bool(survivors))
        if survivors:
            self.branches = list(survivors)
        return check

    def step_across_truncate(self, read: tuple, truncate: tuple) -> Check:
        """READ `read` (spec ids) while the host truncates (`truncate`: host.truncate's
        arguments) under its copy (capability RACES). A truncate racing an access is seen
        whole or not at all (spec/memory.py): the read is explained by the spec's READ
        before host.truncate or after it, and the run goes on from that truncate."""
        guest = self.guests[read[0]]
        assert guest is not None, "a read across a truncate needs a connected guest"
        host = self.target.host
        targs = self._target_args("READ", read, self.branches[0][1])
        observed = self._observe(lambda: Observed("ok", guest.read_across_truncate(
            *targs, lambda: host.truncate(*truncate))), "request")
        calls = (("READ", read), ("host.truncate", truncate))
        allowed: list[object] = []
        survivors: dict[tuple[State, Bindings], None] = {}
        for state, b in self.branches:
            for first, second in (calls, calls[::-1]):
                for one in REGISTRY[first[0]](state, *first[1]):
                    for two in REGISTRY[second[0]](one.state, *second[1]):
                        result = (one if first[0] == "READ" else two).result
                        if result not in allowed:
                            allowed.append(result)
                        bound = match(b, "READ", read[0], result, observed, self.loose)
                        if bound is not None:
                            survivors.setdefault(
                                (two.state, bound.forget_inodes(two.state.inodes)), None)
        check = Check("READ", tuple(read), observed, tuple(allowed), bool(survivors))
        if survivors:
            self.branches = list(survivors)
        return check
