"""The state machines: one family per property group, each judging one property per run.

Every machine drives one fresh target beside the spec (a `Session`) with rules that
draw their arguments from the spec state the run has reached (held nodeids, live
handles, mapped ranges), plus a measured share of stale or malformed ones. Each step
must be explained by the spec; a step that is not is attributed to a named property.
A run judges one *focus* property: a departure attributed to it fails the run with the
trace so far; a departure attributed to another property ends the checking of that case
(the runner reports it under the property it breaks, and counts the case as cut short for
the focus), so every property gets its own verdict. Every step checked while a case
still judges counts as a judged step of the focus property.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from pagefs.conformance.attribute import History, attribute
from pagefs.conformance.families import DIR_NAMES, FILE_NAMES, Family
from pagefs.conformance.operations import (
    BY_NAME,
    MODES,
    OFFSETS,
    OPERATIONS,
    PAGE,
    RANGES_USED,
    Need,
    Operation,
)
from pagefs.conformance.session import Bindings, Check, Session
from pagefs.conformance.target import MAPPINGS, PEERS, RACES, RAW_NAMES, TargetFactory
from pagefs.spec import Config, State
from pagefs.spec.datatypes import O_RDONLY, O_RDWR, FileKind, HandleKind

__all__ = ["RANGES_USED", "Departure", "SpecMachine", "machine_for"]

SCENE_DATA = bytes(range(1, 251)) * 20  # 5000 bytes, none zero: a page and a partial page


class Departure(AssertionError):
    """The target did something the spec does not allow, attributed to `prop`."""

    def __init__(self, prop: str, trace: list[str]) -> None:
        self.prop, self.trace = prop, list(trace)
        super().__init__(f"{prop}: the target departs from the spec\n" + "\n".join(trace))


class SpecMachine(RuleBasedStateMachine):
    """Rules for every family; a family's machine enables only its own."""

    factory: ClassVar[TargetFactory]
    family: ClassVar[Family]
    focus: ClassVar[str]
    config: ClassVar[Config] = Config()
    session_class: ClassVar[type] = Session  # the vector generator runs the spec alone
    on_example: ClassVar[Callable[[], None]] = staticmethod(lambda: None)
    on_departure: ClassVar[Callable[[Departure], None]] = staticmethod(lambda d: None)
    on_diverge: ClassVar[Callable[[set[str], list[str]], None]] = staticmethod(
        lambda props, trace: None)
    on_judged: ClassVar[Callable[[], None]] = staticmethod(lambda: None)

    def __init__(self) -> None:
        super().__init__()
        type(self).on_example()
        caps = self.factory.capabilities
        guests = 2 if PEERS in caps and self.family.name in ("data coherence",
                                                             "handles and lifetimes") else 1
        config = replace(self.config, callers=self.family.callers)
        self.session = self.session_class(self.factory, config,
                                          read_only=self.family.read_only, guests=guests,
                                          loose=self.family.loose)
        self.history = History()
        self.diverged = False
        self.trace: list[str] = []
        self.hot: list[int] = []  # file offsets written lately: where reads should look
        self.probing = False

    def teardown(self) -> None:
        try:
            if self.focus == "RECLAIM" and not self.diverged:
                self.all_guests_leave()
        finally:
            self.session.close()

    def all_guests_leave(self) -> None:
        """RECLAIM's host side: when every guest has gone, the host holds nothing for
        them (as many descriptors as before the first came)."""
        for g, session in enumerate(self.state.guests):
            if session.connected and not self.diverged:
                self.step("DESTROY", g)
        leftovers = None if self.diverged else self.session.target.leftovers()
        if leftovers:
            self.trace.append(f"     after every guest left: {leftovers}")
            departure = Departure("RECLAIM", self.trace)
            type(self).on_departure(departure)
            raise departure

    # --- running one step ---

    def enabled(self, op: Operation) -> bool:
        """Whether this case may take a step of `op` now."""
        if self.diverged or op not in self.family.operations:
            return False
        if op.capability is not None and op.capability not in self.factory.capabilities:
            return False
        if op.peers:
            return len(self.session.guests) > 1
        if self.family.bad_args:
            return True
        # Families that judge data and attributes spend their steps where there is
        # something to judge: a file to write, a handle to read, a range to load.
        return op.needs is None or bool(self.guests_with(op.needs))

    def guests_with(self, needs: Need) -> list[int]:
        state = self.state
        if needs is Need.FILE:
            root = state.inodes[1]
            has = any(state.inodes[i].kind is FileKind.REG for i in root.entries.values())
            return list(range(len(state.guests))) if has else []
        out = []
        for g, session in enumerate(state.guests):
            if needs is Need.HANDLE and any(h.kind is HandleKind.FILE
                                         for h in session.handles.values()):
                out.append(g)
            elif needs is Need.DIRHANDLE and any(h.kind is HandleKind.DIR
                                              for h in session.handles.values()):
                out.append(g)
            elif needs is Need.MAPPED and any(m is not None for m in session.window[:RANGES_USED]):
                out.append(g)
            elif needs is Need.NODE and len(session.nodes) > 1:
                out.append(g)
        return out

    @property
    def state(self) -> State:
        return self.session.state

    def step(self, op: str, *args: object) -> Check:
        state, bindings = self.session.branches[0]
        judging = not self.diverged  # a step after a departure elsewhere judges nothing
        if op == "STORE" and self.family.probe == "bytes" and judging and not self.probing:
            self.look_first(state, args)
            state, bindings = self.session.branches[0]
            judging = not self.diverged
        return self.judge(self.session.step(op, args), state, bindings, judging, op, args)

    def judge(self, check: Check, state: State, bindings: Bindings, judging: bool, op: str,
              args: tuple, blame: set[str] | None = None) -> Check:
        """Trace a step taken from `state`, probe what it changed (as `op(*args)`), or
        attribute its departure: to `blame` if given, else by what the step was."""
        self.trace.append(f"{len(self.trace) + 1:3}. {check.line()}")
        if getattr(self.session, "finished", False):
            self.diverged = True  # the spec alone has no single next state to follow
        if check.ok:
            if judging:
                type(self).on_judged()
            self.history.record(state, check)
            if self.family.probe and not self.diverged and not self.probing:
                self.probing = True
                try:
                    self.probe(state, op, args)
                finally:
                    self.probing = False
            return check
        if not judging:
            return check  # this case stopped judging at an earlier departure
        props = blame or attribute(state, bindings, check, self.history)
        if self.focus in props:
            type(self).on_judged()
            departure = Departure(self.focus, self.trace)
            type(self).on_departure(departure)
            raise departure
        self.diverged = True  # judged by the run for those properties
        type(self).on_diverge(props, self.trace)
        return check

    # --- probes: after a change, look at once from every side (as fsx checks every op) ---

    def probe(self, before: State, op: str, args: tuple) -> None:
        """Observe what a change must have changed: through every guest's mappings and
        handles, from the host, and (metadata) in every guest's attributes."""
        if self.family.probe == "handles":
            self.probe_handles(before, op, args)
            return
        touches = BY_NAME[op].touches if op in BY_NAME else None
        touched = touches(before, args) if touches else None
        if touched is None:
            return
        ino, offset, length = touched
        state = self.state
        if ino not in state.inodes:
            return
        if self.family.probe == "attrs":
            for g, session in enumerate(state.guests):
                held = [n for n, node in session.nodes.items() if node.ino == ino]
                if held and session.connected:
                    self.step_quietly("GETATTR", g, held[0])
            return
        length = max(1, min(length, 8))
        name = next((n for n, i in state.inodes[1].entries.items() if i == ino), None)
        if name is not None and not op.startswith("host."):
            self.step_quietly("host.read", name, offset, length)  # COH-WRITE first
        for g, session in enumerate(state.guests):
            if not session.connected:
                continue
            if op != "STORE" or g != args[0]:
                self.load_where_mapped(g, ino, offset, length)
            readable = [f for f, h in session.handles.items()
                        if h.ino == ino and h.kind is HandleKind.FILE and h.access.can_read]
            if readable and op.startswith("host."):
                self.step_quietly("READ", g, readable[0], offset, length)

    def load_where_mapped(self, g: int, ino: int, offset: int, length: int) -> None:
        """Guest g loads file bytes [offset, offset+length) of `ino` through each of its
        mappings that covers them."""
        for index, mapped in enumerate(self.state.guests[g].window[:RANGES_USED]):
            if mapped is not None and mapped.ino == ino and \
                    mapped.foffset <= offset < mapped.foffset + self.config.range_size:
                woffset = index * self.config.range_size + offset - mapped.foffset
                self.step_quietly("LOAD", g, woffset, length)

    def look_first(self, before: State, args: tuple) -> None:
        """Before a STORE, every peer mapping those bytes looks at them: after it, they
        must see the new bytes, not what they saw (COH-PEER: no peer keeps a copy)."""
        touches = BY_NAME["STORE"].touches
        touched = touches(before, args) if touches else None
        if touched is None or touched[0] not in before.inodes:
            return
        ino, offset, length = touched
        self.probing = True
        try:
            for g, session in enumerate(before.guests):
                if g != args[0] and session.connected:
                    self.load_where_mapped(g, ino, offset, max(1, min(length, 8)))
        finally:
            self.probing = False

    def probe_handles(self, before: State, op: str, args: tuple) -> None:
        """After a RELEASE: the released number must be refused, and the next handle the
        guest opens on that inode must be a new number (HANDLE). After a FORGET of the
        last lookup: the nodeid must be refused, not name anything (NODEID)."""
        if op == "FORGET":
            g, nodeid = args[0], args[1]
            if nodeid in before.guests[g].nodes and nodeid not in self.state.guests[g].nodes:
                self.step_quietly("GETATTR", g, nodeid)
            return
        if op not in ("RELEASE", "RELEASEDIR"):
            return
        g, fh = args[0], args[1]
        handle = before.guests[g].handles.get(fh)
        if handle is None:
            return
        if op == "RELEASE":
            self.step_quietly("READ", g, fh, 0, 1)
        nodes = [n for n, node in self.state.guests[g].nodes.items() if node.ino == handle.ino]
        if nodes:
            self.step_quietly("OPEN" if op == "RELEASE" else "OPENDIR", g, nodes[0],
                              *([O_RDONLY] if op == "RELEASE" else []))

    def step_quietly(self, op: str, *args: object) -> None:
        """A probe step: checked like any other, but it does not probe in turn."""
        if not self.diverged:
            self.step(op, *args)

    # --- how a case starts: a scene where the family has something to judge at once ---

    @initialize()
    def scene(self) -> None:
        """Files with data across a page boundary, already looked up, opened and mapped
        as the family needs, so that even a short case exercises its properties."""
        scene = self.family.scene
        if scene == "owners":
            self.owners_scene()
            return
        if scene in ("tree", "traps"):
            self.step("host.mkdir", b"d", 0o755)
        if scene == "traps":
            self.step("host.symlink", b"..", b"s")
            self.step("host.symlink", b"/etc/passwd", b"d/s")
            self.step("host.mkfifo", b"p", 0o644)
        self.step("host.create", b"a", 0o644)
        if scene in ("tree", "traps"):
            return
        self.step("host.write", b"a", 0, SCENE_DATA)
        mappings = MAPPINGS in self.factory.capabilities
        for g in range(len(self.session.guests)):
            self.step("LOOKUP", g, 1, b"a")
            if scene == "opened":
                self.step("OPEN", g, 2, O_RDONLY)
            self.step("OPEN", g, 2, O_RDONLY if scene == "read-only" else O_RDWR)
            if mappings and scene in ("mapped", "read-only", "opened"):
                fh = self.state.guests[g].next_fh - 1
                if scene == "mapped":
                    # The same file range mapped read-only first (window range 1), then
                    # writable below: a guest that keeps the read-only mapping of the
                    # range when a writable one is asked for faults on the first STORE.
                    self.step("SETUPMAPPING", g, fh, 0, self.config.range_size, False,
                              self.config.range_size)
                self.step("SETUPMAPPING", g, fh, 0, self.config.range_size,
                          scene != "read-only", 0)
                if scene == "read-only":  # RO-EXPORT's first refusal, probed in every case
                    self.step("SETUPMAPPING", g, fh, 0, self.config.range_size, True, 0)
                for page in (0, PAGE):  # touch both pages: a caching guest now holds them
                    self.step("LOAD", g, page, 8)
                if scene == "mapped":  # and store through the writable one (the same byte)
                    self.step("STORE", g, 0, SCENE_DATA[:1])

    # --- argument choices, drawn from where the run is ---

    def owners_scene(self) -> None:
        """OWNERSHIP's start: a directory anyone may write (d), a set-gid one of root's
        group (e), a set-uid and set-gid file of root's anyone may write (a) and one only
        root may (d/a); the guest, a user, has looked them up."""
        self.step("host.mkdir", b"d", 0o777)
        self.step("host.mkdir", b"e", 0o777)
        self.step("host.chmod", b"e", 0o2777)
        self.step("host.create", b"a", 0o6777)
        self.step("host.create", b"d/a", 0o644)
        for name in (b"d", b"e", b"a"):
            self.step("LOOKUP", 0, 1, name)

    def mode(self, data: st.DataObject) -> int:
        """Permission bits a request or the host asks for: the family's, if it has some."""
        return data.draw(st.sampled_from(self.family.modes) if self.family.modes else MODES)

    def dir_mode(self, data: st.DataObject) -> int:
        """A new directory's bits: 0755, or the family's choice if it has some."""
        return self.mode(data) if self.family.modes else 0o755

    def guest(self, data: st.DataObject, needs: Need | None = None) -> int:
        choices = self.guests_with(needs) if needs and not self.family.bad_args else []
        choices = choices or list(range(len(self.session.guests)))
        return data.draw(st.sampled_from(choices), label="guest") if len(choices) > 1 \
            else choices[0]

    def nodeid(self, data: st.DataObject, g: int, kind: FileKind | None = None) -> int:
        session = self.state.guests[g]
        held = sorted(n for n, node in session.nodes.items()
                      if kind is None or self.state.inodes[node.ino].kind is kind)
        stale = [n for n in range(1, session.next_nodeid) if n not in session.nodes]
        bad = stale + [session.next_nodeid + 7] if self.family.bad_args else []
        choices = (held or [1]) * 6 + bad
        return data.draw(st.sampled_from(choices), label="nodeid")

    def fh(self, data: st.DataObject, g: int, kind: HandleKind = HandleKind.FILE) -> int:
        session = self.state.guests[g]
        live = sorted(f for f, h in session.handles.items() if h.kind is kind)
        released = [f for f in range(1, session.next_fh) if f not in session.handles]
        bad = released + [session.next_fh + 5] if self.family.bad_args or not live else []
        return data.draw(st.sampled_from(live * 6 + bad), label="fh")

    def name(self, data: st.DataObject, files: bool = True) -> bytes:
        names = list(self.family.files if files else DIR_NAMES)
        if self.family.bad_args:
            names += [b".", b"..", b"n" * 256, b""]
            if RAW_NAMES in self.factory.capabilities:
                names += [b"a/b"]  # (a NUL cannot travel: FUSE names are NUL-terminated)
        return data.draw(st.sampled_from(names), label="name")

    def path(self, data: st.DataObject) -> bytes:
        if self.family.files != FILE_NAMES:  # a data family: keep to a few files
            return data.draw(st.sampled_from(self.family.files), label="path")
        return data.draw(st.sampled_from(
            [*FILE_NAMES, *DIR_NAMES, b"d/a", b"d/b", b"e/a"]), label="path")

    def offset(self, data: st.DataObject, write: bool = False) -> int:
        """An offset in a file, often one written lately (so reads meet writes)."""
        if self.hot and not write and data.draw(st.booleans(), label="hot"):
            return data.draw(st.sampled_from(self.hot[-4:]), label="offset")
        offset = data.draw(OFFSETS, label="offset")
        if write:
            self.hot.append(offset)
        return offset

    def woffset(self, data: st.DataObject, g: int, write: bool = False) -> int:
        window = self.state.guests[g].window[:RANGES_USED]
        mapped = [i for i, m in enumerate(window) if m is not None]
        index = data.draw(st.sampled_from(mapped * 8 + list(range(RANGES_USED))), label="range")
        return index * self.config.range_size + self.offset(data, write)

    @precondition(lambda self: self.diverged)
    @rule()
    def idle(self) -> None:
        """Always possible, so a run that stopped judging can end quietly."""


def _rule_for(op: Operation) -> Callable[[SpecMachine, st.DataObject], None]:
    """The hypothesis rule that takes one step of `op`, arguments drawn from the state."""
    def step(self: SpecMachine, data: st.DataObject) -> None:
        args = op.arguments(self, data)
        if args is not None:
            self.step(op.name, *args)

    def enabled(self: SpecMachine) -> bool:
        return self.enabled(op)

    step.__name__ = step.__qualname__ = op.rule_name
    enabled.__name__ = f"enabled_{op.rule_name}"
    return precondition(enabled)(rule(data=st.data())(step))


# One rule per declared operation, named after it (hypothesis orders rules by name).
for _op in OPERATIONS:
    setattr(SpecMachine, _op.rule_name, _rule_for(_op))


class RacingMachine(SpecMachine):
    """The data family's machine on a target that can time a host truncate inside a
    read's copy (capability RACES): one rule more. (Its own class, so that the cases
    drawn for every other target and family stay what the seed gave them.)"""

    def race_candidates(self) -> list[tuple[int, int, bytes]]:
        """(guest, readable handle, its file's name in the root) a race may use."""
        state = self.state
        names = {ino: name for name, ino in state.inodes[1].entries.items()}
        return [(g, fh, names[h.ino]) for g, session in enumerate(state.guests)
                if session.connected for fh, h in sorted(session.handles.items())
                if h.kind is HandleKind.FILE and h.access.can_read and h.ino in names
                and state.inodes[h.ino].kind is FileKind.REG]

    def races(self) -> bool:
        return not self.diverged and bool(self.race_candidates())

    @precondition(races)
    @rule(data=st.data())
    def read_across_truncate(self, data: st.DataObject) -> None:
        """EOF-FAULT's count: a read of three pages from within the first two, whose
        copy the host truncates mid-way, returns exactly the bytes before the new end
        (or all, had it copied first): never the rest of a page it copied whole."""
        g, fh, name = data.draw(st.sampled_from(self.race_candidates()), label="race")
        ino = self.state.inodes[1].entries[name]
        if self.state.inodes[ino].size < 3 * PAGE:  # the file must reach past the read
            self.step("host.write", name, 2 * PAGE, SCENE_DATA[:PAGE + 500])
            if self.diverged or fh not in self.state.guests[g].handles:
                return
        offset = data.draw(st.one_of(st.sampled_from([0, 1, 7, PAGE - 1, PAGE, PAGE + 3]),
                                     st.integers(0, 2 * PAGE - 1)), label="offset")
        # Mostly an end inside a page the read crosses, so the page after it faults.
        end = max(0, offset + data.draw(st.one_of(st.sampled_from([1, 100, PAGE - 1, PAGE + 1]),
                                                  st.integers(-PAGE, 2 * PAGE)), label="end"))
        state, bindings = self.session.branches[0]
        self.trace.append(f"     the host truncates {name!r} to {end} during this READ:")
        check = self.session.step_across_truncate((g, fh, offset, 3 * PAGE), (name, end))
        self.judge(check, state, bindings, True, "host.truncate", (name, end), {"EOF-FAULT"})


def machine_for(factory: TargetFactory, family: Family, focus: str, *,
                on_example: Callable[[], None] = lambda: None,
                on_departure: Callable[[Departure], None] = lambda d: None,
                on_diverge: Callable[[set[str], list[str]], None] = lambda props, trace: None,
                on_judged: Callable[[], None] = lambda: None,
                ) -> type[SpecMachine]:
    """A machine class bound to one target factory, family and focus property."""
    races = RACES in factory.capabilities and "EOF-FAULT" in family.needs
    base = RacingMachine if races else SpecMachine
    return type(f"{family.name.title().replace(' ', '')}_{focus}", (base,), {
        "factory": factory, "family": family, "focus": focus,
        "on_example": staticmethod(on_example), "on_departure": staticmethod(on_departure),
        "on_diverge": staticmethod(on_diverge), "on_judged": staticmethod(on_judged),
    })
