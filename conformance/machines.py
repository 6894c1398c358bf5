"""The state machines: one family per property group, each judging one property per run.

Every machine drives one fresh target beside the spec (a `Session`) with rules that
draw their arguments from the spec state the run has reached (held nodeids, live
handles, mapped ranges), plus a measured share of stale or malformed ones. Each step
must be explained by the spec; a step that is not is attributed to a named property.
A run judges one *focus* property: a departure attributed to it fails the run with the
trace so far; a departure attributed to another property ends the checking quietly (the
run for that property will report it), so every property gets its own verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from pagefs.conformance.attribute import History, attribute
from pagefs.conformance.families import DIR_NAMES, FILE_NAMES, Family
from pagefs.conformance.session import Check, Session
from pagefs.conformance.target import (
    MAPPINGS,
    PEERS,
    RAW_NAMES,
    TargetFactory,
)
from pagefs.spec import Config, State
from pagefs.spec.datatypes import (
    O_CREAT,
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    RENAME_NOREPLACE,
    FileKind,
    HandleKind,
)
from pagefs.spec.tree import resolve_path

PAGE = 4096
RANGES_USED = 3  # window ranges the machines map into (small, so accesses collide)
OFFSETS = st.one_of(st.sampled_from([0, 1, 7, PAGE - 1, PAGE, PAGE + 3, 2 * PAGE - 1, 2 * PAGE]),
                    st.integers(0, 3 * PAGE))
SIZES = st.sampled_from([0, 1, 100, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE, 2 * PAGE + 5])
DATA = st.binary(min_size=1, max_size=8)
MODES = st.sampled_from([0o600, 0o644, 0o755, 0o400])
ACCESS = st.sampled_from([O_RDONLY, O_WRONLY, O_RDWR])
SCENE_DATA = bytes(range(1, 251)) * 20  # 5000 bytes, none zero: a page and a partial page


class Departure(AssertionError):
    """The target did something the spec does not allow, attributed to `prop`."""

    def __init__(self, prop: str, trace: list[str]) -> None:
        self.prop, self.trace = prop, list(trace)
        super().__init__(f"{prop}: the target departs from the spec\n" + "\n".join(trace))


def _touched(state: State, op: str, args: tuple) -> tuple[int, int, int] | None:
    """(inode, file offset, length) a successful change touched, or None."""
    if op in ("host.write", "host.truncate", "host.chmod"):
        ino = resolve_path(state, args[0])
        if isinstance(ino, frozenset):
            return None
        if op == "host.write":
            return ino, args[1], len(args[2])
        size = args[1] if op == "host.truncate" else state.inodes[ino].size
        return ino, max(0, size - 1), 2
    if op == "STORE":
        guest, woffset, data = args
        mapped = state.guests[guest].window[woffset // state.config.range_size] \
            if 0 <= woffset < state.config.window_size else None
        if mapped is None:
            return None
        return mapped.ino, mapped.foffset + woffset % state.config.range_size, len(data)
    if op in ("WRITE", "SETATTR"):
        guest = args[0]
        if op == "WRITE":
            handle = state.guests[guest].handles.get(args[1])
            return (handle.ino, args[2], len(args[3])) if handle else None
        node = state.guests[guest].nodes.get(args[1])
        return (node.ino, 0, 1) if node else None
    return None


def enabled(name: str) -> Callable[[SpecMachine], bool]:
    def check(self: SpecMachine) -> bool:
        return not self.diverged and name in self.family.rules and self.can(name)
    check.__name__ = f"enabled_{name}"
    return check


_MEMORY_RULES = {"setupmapping", "removemapping", "load", "store"}
_NEEDS = {"read": "handle", "write": "handle", "release": "handle", "flush": "handle",
          "fsync": "handle", "setupmapping": "handle", "load": "mapped", "store": "mapped",
          "removemapping": "mapped", "readdir": "dirhandle", "releasedir": "dirhandle",
          "getattr": "node", "setattr": "node", "open": "node", "host_write": "file",
          "host_truncate": "file", "host_unlink": "file", "host_read": "file",
          "host_stat": "file", "host_chmod": "file"}


class SpecMachine(RuleBasedStateMachine):
    """Rules for every family; a family's machine enables only its own."""

    factory: ClassVar[TargetFactory]
    family: ClassVar[Family]
    focus: ClassVar[str]
    config: ClassVar[Config] = Config()
    session_class: ClassVar[type] = Session  # the vector generator runs the spec alone
    on_example: ClassVar[Callable[[], None]] = staticmethod(lambda: None)
    on_departure: ClassVar[Callable[[Departure], None]] = staticmethod(lambda d: None)
    on_diverge: ClassVar[Callable[[set[str], str], None]] = staticmethod(
        lambda props, line: None)

    def __init__(self) -> None:
        super().__init__()
        type(self).on_example()
        caps = self.factory.capabilities
        guests = 2 if PEERS in caps and self.family.name in ("data coherence",
                                                             "handles and lifetimes") else 1
        self.session = self.session_class(self.factory, self.config,
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

    def can(self, name: str) -> bool:
        caps = self.factory.capabilities
        if name in _MEMORY_RULES and MAPPINGS not in caps:
            return False
        if name in ("destroy", "init"):
            return len(self.session.guests) > 1
        if self.family.bad_args:
            return True
        # Families that judge data and attributes spend their steps where there is
        # something to judge: a file to write, a handle to read, a range to load.
        needs = _NEEDS.get(name)
        return needs is None or bool(self.guests_with(needs))

    def guests_with(self, needs: str) -> list[int]:
        state = self.state
        if needs == "file":
            root = state.inodes[1]
            has = any(state.inodes[i].kind is FileKind.REG for i in root.entries.values())
            return list(range(len(state.guests))) if has else []
        out = []
        for g, session in enumerate(state.guests):
            if needs == "handle" and any(h.kind is HandleKind.FILE
                                         for h in session.handles.values()):
                out.append(g)
            elif needs == "dirhandle" and any(h.kind is HandleKind.DIR
                                              for h in session.handles.values()):
                out.append(g)
            elif needs == "mapped" and any(m is not None for m in session.window[:RANGES_USED]):
                out.append(g)
            elif needs == "node" and len(session.nodes) > 1:
                out.append(g)
        return out

    @property
    def state(self) -> State:
        return self.session.state

    def step(self, op: str, *args: object) -> Check:
        state, bindings = self.session.branches[0]
        check = self.session.step(op, args)
        self.trace.append(f"{len(self.trace) + 1:3}. {check.line()}")
        if getattr(self.session, "finished", False):
            self.diverged = True  # the spec alone has no single next state to follow
        if check.ok:
            self.history.record(state, check)
            if self.family.probe and not self.diverged and not self.probing:
                self.probing = True
                try:
                    self.probe(state, op, args)
                finally:
                    self.probing = False
            return check
        props = attribute(state, bindings, check, self.history)
        if self.focus in props:
            departure = Departure(self.focus, self.trace)
            type(self).on_departure(departure)
            raise departure
        self.diverged = True  # judged by the run for those properties
        type(self).on_diverge(props, self.trace[-1].strip())
        return check

    # --- probes: after a change, look at once from every side (as fsx checks every op) ---

    def probe(self, before: State, op: str, args: tuple) -> None:
        """Observe what a change must have changed: through every guest's mappings and
        handles, from the host, and (metadata) in every guest's attributes."""
        if self.family.probe == "handles":
            self.probe_handles(before, op, args)
            return
        touched = _touched(before, op, args)
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
            for index, mapped in enumerate(session.window[:RANGES_USED]):
                inside = mapped and mapped.ino == ino and \
                    mapped.foffset <= offset < mapped.foffset + self.config.range_size
                if inside and (op != "STORE" or g != args[0]):
                    woffset = index * self.config.range_size + offset - mapped.foffset
                    self.step_quietly("LOAD", g, woffset, length)
            readable = [f for f, h in session.handles.items()
                        if h.ino == ino and h.kind is HandleKind.FILE and h.access.can_read]
            if readable and op.startswith("host."):
                self.step_quietly("READ", g, readable[0], offset, length)

    def probe_handles(self, before: State, op: str, args: tuple) -> None:
        """After a RELEASE: the released number must be refused, and the next handle the
        guest opens on that inode must be a new number (HANDLE)."""
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
                self.step("SETUPMAPPING", g, fh, 0, self.config.range_size,
                          scene != "read-only", 0)
                if scene == "read-only":  # RO-EXPORT's first refusal, probed in every case
                    self.step("SETUPMAPPING", g, fh, 0, self.config.range_size, True, 0)
                for page in (0, PAGE):  # touch both pages: a caching guest now holds them
                    self.step("LOAD", g, page, 8)

    # --- argument choices, drawn from where the run is ---

    def guest(self, data: st.DataObject, needs: str | None = None) -> int:
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

    # --- host operations ---

    @precondition(enabled("host_create"))
    @rule(data=st.data())
    def host_create(self, data: st.DataObject) -> None:
        self.step("host.create", self.path(data), data.draw(MODES))

    @precondition(enabled("host_write"))
    @rule(data=st.data())
    def host_write(self, data: st.DataObject) -> None:
        self.step("host.write", self.path(data), self.offset(data, write=True), data.draw(DATA))

    @precondition(enabled("host_truncate"))
    @rule(data=st.data())
    def host_truncate(self, data: st.DataObject) -> None:
        self.step("host.truncate", self.path(data), data.draw(SIZES))

    @precondition(enabled("host_unlink"))
    @rule(data=st.data())
    def host_unlink(self, data: st.DataObject) -> None:
        self.step("host.unlink", self.path(data))

    @precondition(enabled("host_rename"))
    @rule(data=st.data())
    def host_rename(self, data: st.DataObject) -> None:
        self.step("host.rename", self.path(data), self.path(data))

    @precondition(enabled("host_mkdir"))
    @rule(data=st.data())
    def host_mkdir(self, data: st.DataObject) -> None:
        self.step("host.mkdir", data.draw(st.sampled_from(DIR_NAMES)), 0o755)

    @precondition(enabled("host_rmdir"))
    @rule(data=st.data())
    def host_rmdir(self, data: st.DataObject) -> None:
        self.step("host.rmdir", data.draw(st.sampled_from(DIR_NAMES)))

    @precondition(enabled("host_chmod"))
    @rule(data=st.data())
    def host_chmod(self, data: st.DataObject) -> None:
        self.step("host.chmod", self.path(data), data.draw(MODES))

    @precondition(enabled("host_symlink"))
    @rule(data=st.data())
    def host_symlink(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from([b"a", b"..", b"../..", b"/etc/passwd", b"d"]))
        self.step("host.symlink", target, data.draw(st.sampled_from([b"s", b"d/s"])))

    @precondition(enabled("host_mkfifo"))
    @rule(data=st.data())
    def host_mkfifo(self, data: st.DataObject) -> None:
        self.step("host.mkfifo", data.draw(st.sampled_from([b"p", b"d/p"])), 0o644)

    @precondition(enabled("host_read"))
    @rule(data=st.data())
    def host_read(self, data: st.DataObject) -> None:
        self.step("host.read", self.path(data), self.offset(data), data.draw(st.integers(1, 8)))

    @precondition(enabled("host_stat"))
    @rule(data=st.data())
    def host_stat(self, data: st.DataObject) -> None:
        self.step("host.stat", self.path(data))

    # --- guest requests: namespace ---

    @precondition(enabled("lookup"))
    @rule(data=st.data())
    def lookup(self, data: st.DataObject) -> None:
        g = self.guest(data)
        names = [*self.family.files, *DIR_NAMES, b"s", b"p"]
        name = data.draw(st.sampled_from(names)) if data.draw(st.booleans()) else self.name(data)
        self.step("LOOKUP", g, self.nodeid(data, g, FileKind.DIR), name)

    @precondition(enabled("forget"))
    @rule(data=st.data())
    def forget(self, data: st.DataObject) -> None:
        g = self.guest(data)
        self.step("FORGET", g, self.nodeid(data, g), data.draw(st.integers(1, 2)))

    @precondition(enabled("getattr"))
    @rule(data=st.data())
    def getattr(self, data: st.DataObject) -> None:
        g = self.guest(data, "node")
        self.step("GETATTR", g, self.nodeid(data, g))

    @precondition(enabled("setattr"))
    @rule(data=st.data())
    def setattr(self, data: st.DataObject) -> None:
        g = self.guest(data, "node")
        which = data.draw(st.sampled_from(["size", "mode", "mtime"]))
        size = data.draw(SIZES) if which == "size" else None
        mode = data.draw(MODES) if which == "mode" else None
        mtime = data.draw(st.integers(10**18, 2 * 10**18)) if which == "mtime" else None
        self.step("SETATTR", g, self.nodeid(data, g, FileKind.REG), size, mode, mtime)

    @precondition(enabled("readlink"))
    @rule(data=st.data())
    def readlink(self, data: st.DataObject) -> None:
        g = self.guest(data)
        self.step("READLINK", g, self.nodeid(data, g))

    @precondition(enabled("symlink"))
    @rule(data=st.data())
    def symlink(self, data: st.DataObject) -> None:
        g = self.guest(data)
        target = data.draw(st.sampled_from([b"a", b"../x", b"/etc"]))
        self.step("SYMLINK", g, self.nodeid(data, g, FileKind.DIR), self.name(data), target)

    @precondition(enabled("mkdir"))
    @rule(data=st.data())
    def mkdir(self, data: st.DataObject) -> None:
        g = self.guest(data)
        self.step("MKDIR", g, self.nodeid(data, g, FileKind.DIR), self.name(data, files=False),
                  0o755)

    @precondition(enabled("unlink"))
    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        g = self.guest(data)
        self.step("UNLINK", g, self.nodeid(data, g, FileKind.DIR), self.name(data))

    @precondition(enabled("rmdir"))
    @rule(data=st.data())
    def rmdir(self, data: st.DataObject) -> None:
        g = self.guest(data)
        self.step("RMDIR", g, self.nodeid(data, g, FileKind.DIR), self.name(data, files=False))

    @precondition(enabled("rename"))
    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        g = self.guest(data)
        src, dst = self.nodeid(data, g, FileKind.DIR), self.nodeid(data, g, FileKind.DIR)
        files = data.draw(st.booleans())
        flags = data.draw(st.sampled_from([0, 0, RENAME_NOREPLACE]))
        self.step("RENAME", g, src, self.name(data, files), dst, self.name(data, files), flags)

    @precondition(enabled("opendir"))
    @rule(data=st.data())
    def opendir(self, data: st.DataObject) -> None:
        g = self.guest(data)
        self.step("OPENDIR", g, self.nodeid(data, g, FileKind.DIR))

    @precondition(enabled("readdir"))
    @rule(data=st.data())
    def readdir(self, data: st.DataObject) -> None:
        g = self.guest(data, "dirhandle")
        self.step("READDIR", g, self.fh(data, g, HandleKind.DIR))

    @precondition(enabled("releasedir"))
    @rule(data=st.data())
    def releasedir(self, data: st.DataObject) -> None:
        g = self.guest(data, "dirhandle")
        self.step("RELEASEDIR", g, self.fh(data, g, HandleKind.DIR))

    @precondition(enabled("statfs"))
    @rule(data=st.data())
    def statfs(self, data: st.DataObject) -> None:
        g = self.guest(data)
        self.step("STATFS", g, self.nodeid(data, g))

    # --- guest requests: files ---

    @precondition(enabled("open"))
    @rule(data=st.data())
    def open(self, data: st.DataObject) -> None:
        g = self.guest(data, "node")
        flags = data.draw(ACCESS) | data.draw(st.sampled_from([0, 0, 0, O_TRUNC]))
        kind = None if self.family.bad_args else FileKind.REG
        self.step("OPEN", g, self.nodeid(data, g, kind), flags)

    @precondition(enabled("create"))
    @rule(data=st.data())
    def create(self, data: st.DataObject) -> None:
        g = self.guest(data)
        flags = data.draw(ACCESS) | O_CREAT | data.draw(st.sampled_from([0, O_EXCL]))
        self.step("CREATE", g, self.nodeid(data, g, FileKind.DIR), self.name(data), flags,
                  data.draw(MODES))

    @precondition(enabled("read"))
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        g = self.guest(data, "handle")
        self.step("READ", g, self.fh(data, g), self.offset(data), data.draw(st.integers(1, 8)))

    @precondition(enabled("write"))
    @rule(data=st.data())
    def write(self, data: st.DataObject) -> None:
        g = self.guest(data, "handle")
        self.step("WRITE", g, self.fh(data, g), self.offset(data, write=True), data.draw(DATA))

    @precondition(enabled("release"))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        g = self.guest(data, "handle")
        self.step("RELEASE", g, self.fh(data, g))

    @precondition(enabled("flush"))
    @rule(data=st.data())
    def flush(self, data: st.DataObject) -> None:
        g = self.guest(data, "handle")
        self.step("FLUSH", g, self.fh(data, g))

    @precondition(enabled("fsync"))
    @rule(data=st.data())
    def fsync(self, data: st.DataObject) -> None:
        g = self.guest(data, "handle")
        self.step("FSYNC", g, self.fh(data, g), data.draw(st.booleans()))

    # --- guest requests and accesses: the window ---

    @precondition(enabled("setupmapping"))
    @rule(data=st.data())
    def setupmapping(self, data: st.DataObject) -> None:
        g = self.guest(data, "handle")
        size = self.config.range_size
        index = data.draw(st.integers(0, RANGES_USED - 1), label="range")
        foffset = data.draw(st.sampled_from([0, 0, PAGE]), label="foffset")
        self.step("SETUPMAPPING", g, self.fh(data, g), foffset, size,
                  data.draw(st.booleans(), label="writable"), index * size)

    @precondition(enabled("removemapping"))
    @rule(data=st.data())
    def removemapping(self, data: st.DataObject) -> None:
        g = self.guest(data, "mapped")
        size = self.config.range_size
        self.step("REMOVEMAPPING", g, data.draw(st.integers(0, RANGES_USED - 1)) * size, size)

    @precondition(enabled("load"))
    @rule(data=st.data())
    def load(self, data: st.DataObject) -> None:
        g = self.guest(data, "mapped")
        self.step("LOAD", g, self.woffset(data, g), data.draw(st.integers(1, 8)))

    @precondition(enabled("store"))
    @rule(data=st.data())
    def store(self, data: st.DataObject) -> None:
        g = self.guest(data, "mapped")
        self.step("STORE", g, self.woffset(data, g, write=True), data.draw(DATA))

    # --- sessions ---

    @precondition(enabled("destroy"))
    @rule(data=st.data())
    def destroy(self, data: st.DataObject) -> None:
        g = data.draw(st.integers(1, len(self.session.guests) - 1))
        if self.state.guests[g].connected:
            self.step("DESTROY", g)

    @precondition(enabled("init"))
    @rule(data=st.data())
    def init(self, data: st.DataObject) -> None:
        g = data.draw(st.integers(1, len(self.session.guests) - 1))
        if not self.state.guests[g].connected:
            self.step("INIT", g)

    @precondition(lambda self: self.diverged)
    @rule()
    def idle(self) -> None:
        """Always possible, so a run that stopped judging can end quietly."""


def machine_for(factory: TargetFactory, family: Family, focus: str, *,
                on_example: Callable[[], None] = lambda: None,
                on_departure: Callable[[Departure], None] = lambda d: None,
                on_diverge: Callable[[set[str], str], None] = lambda props, line: None,
                ) -> type[SpecMachine]:
    """A machine class bound to one target factory, family and focus property."""
    return type(f"{family.name.title().replace(' ', '')}_{focus}", (SpecMachine,), {
        "factory": factory, "family": family, "focus": focus,
        "on_example": staticmethod(on_example), "on_departure": staticmethod(on_departure),
        "on_diverge": staticmethod(on_diverge),
    })
