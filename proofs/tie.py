"""The tie between the z3 design and the executable spec, on concrete values.

``Design`` runs the spec's operations through the z3 transition relations of
``transitions`` with every argument a z3 constant, and evaluates the results with
``z3.simplify``: the very terms the proofs reason about, not a Python copy of them.
A multi-byte request is the sequence of its one-byte design steps; after every request
the host drops whatever nothing holds any more (``collect``), as the spec does.

``view`` projects a design state, and ``spec_view`` a spec state, onto what both
describe: live inodes (kind, size, data, the stored tail of the last page), directory
entries, and per guest its connection, counters, nodeids, file handles and window.
The tie test requires, step by step, that the design's answer is one the spec allows
and that the views agree. Identifiers need no translation: inode numbers, nodeids and
handles are the next never-used number on both sides. Names map to small integers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import z3

from pagefs.proofs import design as d
from pagefs.proofs import transitions as t
from pagefs.proofs.design import ROOT, Byte, Frame, Guest, Handle, Inode, Name, Nodeid
from pagefs.spec import Config, Err, Errno, Ok, State
from pagefs.spec.datatypes import FAULT as SPEC_FAULT
from pagefs.spec.datatypes import (
    O_ACCMODE,
    O_EXCL,
    O_TRUNC,
    Attr,
    Created,
    Entry,
    FileKind,
    HandleKind,
    InitInfo,
)

NAMES = (b"a", b"b", b"c")
"""The directory-entry names a tie run uses; the design calls them 1, 2, 3."""

Projected = object  # a value both sides can produce: tuples, bytes, ints, None


def _const(sort: z3.SortRef, n: int) -> z3.ExprRef:
    return d.val(sort, n)


def _bool(b: bool) -> z3.BoolRef:
    return z3.BoolVal(b)


def _literal(value: z3.ExprRef) -> int | None:
    if z3.is_true(value):
        return 1
    if z3.is_false(value):
        return 0
    if z3.is_bv_value(value) or z3.is_int_value(value):
        return int(value.as_long())
    return None


def _int(term: z3.ExprRef) -> int:
    """The value of a closed term. ``simplify`` decides all but quantified conditions
    (an empty directory, an unheld inode); for those a solver finds the one value."""
    known = _literal(z3.simplify(term))
    if known is not None:
        return known
    assert z3.is_bool(term), f"no value for {term}"
    for value in (True, False):
        solver = z3.Solver()
        solver.add(term != z3.BoolVal(value))
        if solver.check() == z3.unsat:
            return int(value)
    raise AssertionError(f"a closed condition z3 cannot decide: {term}")


@dataclass
class Answer:
    """A design step's answer in the spec's terms: errno 0 with a value, an errno, or a fault."""

    errno: int = 0
    value: Projected = None
    fault: bool = False
    outside: bool = False  # not a design step (a host path walk failed, a loop): spec decides

    def matches(self, result: object) -> bool:
        if self.outside:
            return isinstance(result, Err)
        if self.fault:
            return result is SPEC_FAULT
        if self.errno:
            return isinstance(result, Err) and int(result.errno) == self.errno
        return isinstance(result, Ok) and project_value(result.value) == self.value


def project_value(value: object) -> Projected:
    """The part of a spec result the design models."""
    if isinstance(value, Entry):
        return ("entry", value.nodeid, value.attr.ino, value.attr.size)
    if isinstance(value, Created):
        return ("created", value.entry.nodeid, value.entry.attr.ino, value.fh)
    if isinstance(value, Attr):
        return ("attr", value.ino, value.size)
    if isinstance(value, InitInfo):
        return ("init",)
    return value


class Design:
    """The z3 design driven with concrete arguments, one spec request at a time."""

    def __init__(self, config: Config) -> None:
        self.config = config
        assert config.page_size == d.PAGE_SIZE and config.range_size == d.RANGE_PAGES * d.PAGE_SIZE
        self.state = d.simplified(d.initial(config.read_only, config.window_size // d.PAGE_SIZE,
                                            config.max_size))
        self.touched: set[int] = {0, d.PAGE_SIZE - 1, d.PAGE_SIZE}

    # ------------------------------------------------------------ evaluation

    def get(self, term: z3.ExprRef) -> int:
        return _int(term)

    def _run(self, st: t.Step) -> int:
        """Take a step: check it is enabled; on success keep its state; return its errno."""
        assert self.get(st.enabled), "design step not enabled"
        errno = self.get(st.err)
        if not errno:
            self.state = d.simplified(st.new)
        return errno

    def free_frame(self) -> z3.ExprRef:
        f = 1
        while self.get(self.state.owner[_const(Frame, f)]) != 0:
            f += 1
        return _const(Frame, f)

    def collect(self) -> None:
        """Drop every inode nothing holds (the spec does so inside each request)."""
        for i in range(ROOT + 1, self.get(self.state.next_ino)):
            st = t.evict(self.state, _const(Inode, i))
            if self.get(st.enabled):
                self.state = d.simplified(st.new)

    # ------------------------------------------------------------ naming

    def name(self, name: bytes) -> z3.ExprRef:
        return _const(Name, NAMES.index(name) + 1 if name in NAMES else 0)

    def resolve(self, path: bytes) -> tuple[int, bytes] | Answer:
        """A host path's parent directory inode and last name: the host kernel's path walk,
        which the design does not model; when it fails the spec's errno stands."""
        parts = path.split(b"/")
        parent = ROOT
        for part in parts[:-1]:
            child = self.get(self.state.dent[_const(Inode, parent), self.name(part)])
            if not child or not self.get(self.state.is_dir[_const(Inode, child)]):
                return Answer(outside=True)
            parent = child
        return parent, parts[-1]

    def inode_at(self, path: bytes) -> int | Answer:
        where = self.resolve(path)
        if isinstance(where, Answer):
            return where
        parent, last = where
        return self.get(self.state.dent[_const(Inode, parent), self.name(last)])

    def below(self, top: int, i: int) -> bool:
        """``i`` is directory ``top`` or lies under it: moving ``top`` there would make a
        loop, which the spec refuses by its ancestor rule and the design does not model."""
        todo, seen = [top], set()
        while todo:
            here = todo.pop()
            if here == i:
                return True
            if here in seen or not self.get(self.state.is_dir[_const(Inode, here)]):
                continue
            seen.add(here)
            todo += [c for c in (self.get(self.state.dent[_const(Inode, here), self.name(n)])
                                 for n in NAMES) if c]
        return False

    def moves_under_itself(self, p1: int, n1: bytes, p2: int) -> bool:
        source = self.get(self.state.dent[_const(Inode, p1), self.name(n1)])
        return bool(source) and self.get(self.state.is_dir[_const(Inode, source)]) == 1 \
            and self.below(source, p2)

    def size_of(self, i: int) -> int | None:
        if self.get(self.state.is_dir[_const(Inode, i)]):
            return None
        return self.get(self.state.size[_const(Inode, i)])

    # ------------------------------------------------------------ requests

    def apply(self, op: str, args: tuple[object, ...]) -> Answer:
        answer: Answer = getattr(self, "op_" + op.replace(".", "_").lower())(*args)
        if not answer.errno and not answer.fault:
            self.collect()
        return answer

    def _bytes_write(self, step: Callable[[z3.ExprRef, z3.ExprRef, z3.ExprRef], t.Step],
                     positions: range, data: bytes) -> Answer:
        """A request is refused whole or done whole: its last byte, the one furthest from
        the start, decides its errno (EFBIG) before any byte lands."""
        self.touch(*positions)
        if positions:
            last = step(_const(d.Size, positions[-1]), _const(Byte, data[-1]), self.free_frame())
            errno = self.get(last.err)
            if errno:
                return Answer(errno)
        for pos, b in zip(positions, data, strict=True):
            errno = self._run(step(_const(d.Size, pos), _const(Byte, b), self.free_frame()))
            if errno:
                return Answer(errno)
        return Answer(0, len(data))

    def op_host_write(self, path: bytes, offset: int, data: bytes) -> Answer:
        found = self.inode_at(path)
        if isinstance(found, Answer):
            return found
        i = _const(Inode, found)
        return self._bytes_write(lambda p, b, f: t.host_write(self.state, i, p, b, f),
                                 range(offset, offset + len(data)), data)

    def op_host_truncate(self, path: bytes, size: int) -> Answer:
        self.touch(size)
        found = self.inode_at(path)
        if isinstance(found, Answer):
            return found
        return Answer(self._run(t.host_truncate(self.state, _const(Inode, found),
                                                _const(d.Size, size))))

    def _host_make(self, path: bytes, fn: Callable[..., t.Step]) -> Answer:
        where = self.resolve(path)
        if isinstance(where, Answer):
            return where
        parent, last = where
        return Answer(self._run(fn(self.state, _const(Inode, parent), self.name(last))))

    def op_host_create(self, path: bytes, mode: int) -> Answer:
        return self._host_make(path, t.host_create)

    def op_host_mkdir(self, path: bytes, mode: int) -> Answer:
        return self._host_make(path, t.host_mkdir)

    def op_host_unlink(self, path: bytes) -> Answer:
        return self._host_make(path, t.host_unlink)

    def op_host_rmdir(self, path: bytes) -> Answer:
        return self._host_make(path, t.host_rmdir)

    def op_host_rename(self, old: bytes, new: bytes) -> Answer:
        source, target = self.resolve(old), self.resolve(new)
        if isinstance(source, Answer):
            return source
        if isinstance(target, Answer):
            return target
        (p1, n1), (p2, n2) = source, target
        if self.moves_under_itself(p1, n1, p2):
            return Answer(outside=True)
        return Answer(self._run(t.host_rename(self.state, _const(Inode, p1), self.name(n1),
                                              _const(Inode, p2), self.name(n2))))

    def op_host_read(self, path: bytes, offset: int, length: int) -> Answer:
        """The host's read: the page cache's bytes below end of file (an observation)."""
        i = self.inode_at(path)
        if isinstance(i, Answer):
            return i
        if not i:
            return Answer(int(Errno.ENOENT))
        if self.size_of(i) is None:
            return Answer(int(Errno.EISDIR))
        size = self.size_of(i) or 0
        out = bytes(self.get(t.read_byte(self.state, _const(Inode, i), _const(d.Size, q)))
                    for q in range(offset, min(offset + length, size)))
        return Answer(0, out)

    def op_init(self, g: int) -> Answer:
        errno = self._run(t.init(self.state, _const(Guest, g)))
        return Answer(errno, None if errno else ("init",))

    def op_destroy(self, g: int) -> Answer:
        return Answer(self._run(t.destroy(self.state, _const(Guest, g))))

    def _entry(self, g: int, st: t.Step) -> Answer:
        errno = self._run(st)
        if errno:
            return Answer(errno)
        n = self.get(st.value)
        i = self.get(self.state.node_ino[_const(Guest, g), _const(Nodeid, n)])
        return Answer(0, ("entry", n, i, self.size_of(i)))

    def op_lookup(self, g: int, parent: int, name: bytes) -> Answer:
        return self._entry(g, t.lookup(self.state, _const(Guest, g), _const(Nodeid, parent),
                                       self.name(name)))

    def op_forget(self, g: int, nodeid: int, nlookup: int) -> Answer:
        return Answer(self._run(t.forget(self.state, _const(Guest, g), _const(Nodeid, nodeid),
                                         z3.IntVal(nlookup))))

    def op_getattr(self, g: int, nodeid: int) -> Answer:
        """GETATTR reads the design's size (an observation, no transition)."""
        gg, n = _const(Guest, g), _const(Nodeid, nodeid)
        if not self.get(self.state.conn[gg]):
            return Answer(int(Errno.EIO))
        i = self.get(self.state.node_ino[gg, n])
        return Answer(int(Errno.ESTALE)) if not i else Answer(0, ("attr", i, self.size_of(i)))

    @staticmethod
    def _access(flags: int) -> tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]:
        mode = flags & O_ACCMODE
        return _bool(mode in (0, 2)), _bool(mode in (1, 2)), _bool(bool(flags & O_TRUNC))

    def op_open(self, g: int, nodeid: int, flags: int) -> Answer:
        st = t.open_(self.state, _const(Guest, g), _const(Nodeid, nodeid), *self._access(flags))
        errno = self._run(st)
        return Answer(errno, None if errno else self.get(st.value))

    def op_create(self, g: int, parent: int, name: bytes, flags: int, mode: int) -> Answer:
        fh = self.get(self.state.next_fh[_const(Guest, g)])
        st = t.create(self.state, _const(Guest, g), _const(Nodeid, parent), self.name(name),
                      *self._access(flags), _bool(bool(flags & O_EXCL)))
        entry = self._entry(g, st)
        if entry.errno:
            return entry
        assert isinstance(entry.value, tuple)  # _entry's ("entry", nodeid, ino, size)
        _, n, i, _ = entry.value
        return Answer(0, ("created", n, i, fh))

    def op_release(self, g: int, fh: int) -> Answer:
        return Answer(self._run(t.release(self.state, _const(Guest, g), _const(Handle, fh))))

    def op_read(self, g: int, fh: int, offset: int, length: int) -> Answer:
        out = bytearray()
        for q in range(offset, offset + length):
            st = t.read(self.state, _const(Guest, g), _const(Handle, fh), _const(d.Size, q))
            errno = self._run(st)
            if errno:
                return Answer(errno)
            byte = self.get(st.value)
            if byte == 256:
                break
            out.append(byte)
        if not length:
            errno = self._run(t.read(self.state, _const(Guest, g), _const(Handle, fh),
                                     _const(d.Size, offset)))
            if errno:
                return Answer(errno)
        return Answer(0, bytes(out))

    def op_write(self, g: int, fh: int, offset: int, data: bytes) -> Answer:
        gg, h = _const(Guest, g), _const(Handle, fh)
        return self._bytes_write(lambda p, b, f: t.write(self.state, gg, h, p, b, f),
                                 range(offset, offset + len(data)), data)

    def op_setattr(self, g: int, nodeid: int, size: int, mode: None, mtime_ns: None) -> Answer:
        self.touch(size)
        st = t.setattr_size(self.state, _const(Guest, g), _const(Nodeid, nodeid),
                            _const(d.Size, size))
        errno = self._run(st)
        if errno:
            return Answer(errno)
        i = self.get(self.state.node_ino[_const(Guest, g), _const(Nodeid, nodeid)])
        return Answer(0, ("attr", i, self.size_of(i)))

    def _ns(self, fn: Callable[..., t.Step], g: int, *args: z3.ExprRef) -> Answer:
        return Answer(self._run(fn(self.state, _const(Guest, g), *args)))

    def op_mkdir(self, g: int, parent: int, name: bytes, mode: int) -> Answer:
        return self._entry(g, t.mkdir(self.state, _const(Guest, g), _const(Nodeid, parent),
                                      self.name(name)))

    def op_unlink(self, g: int, parent: int, name: bytes) -> Answer:
        return self._ns(t.unlink, g, _const(Nodeid, parent), self.name(name))

    def op_rmdir(self, g: int, parent: int, name: bytes) -> Answer:
        return self._ns(t.rmdir, g, _const(Nodeid, parent), self.name(name))

    def op_rename(self, g: int, parent: int, name: bytes, newparent: int, newname: bytes,
                  flags: int) -> Answer:
        gg = _const(Guest, g)
        p1, p2 = (self.get(self.state.node_ino[gg, _const(Nodeid, n)]) for n in (parent, newparent))
        if p1 and p2 and self.moves_under_itself(p1, name, p2):
            return Answer(outside=True)
        return self._ns(t.rename, g, _const(Nodeid, parent), self.name(name),
                        _const(Nodeid, newparent), self.name(newname))

    def _pages(self, *byte_counts: int) -> list[z3.ExprRef] | None:
        if any(x % d.PAGE_SIZE or x < 0 or x >= (1 << 16) * d.PAGE_SIZE for x in byte_counts):
            return None
        return [_const(d.Slot, x // d.PAGE_SIZE) for x in byte_counts]

    def op_setupmapping(self, g: int, fh: int, foffset: int, length: int, writable: bool,
                        moffset: int) -> Answer:
        pages = self._pages(foffset, length, moffset)
        assert pages is not None, "the tie only sends page-aligned SETUPMAPPING requests"
        fpage, count, start = pages
        return self._ns(t.setupmapping, g, _const(Handle, fh), fpage, count, _bool(writable),
                        start)

    def op_removemapping(self, g: int, moffset: int, length: int) -> Answer:
        pages = self._pages(moffset, length)
        assert pages is not None, "the tie only sends page-aligned REMOVEMAPPING requests"
        return self._ns(t.removemapping, g, *pages)

    def _window(self, woffset: int) -> tuple[z3.ExprRef, z3.ExprRef]:
        return _const(d.Slot, woffset // d.PAGE_SIZE), _const(d.Offset, woffset % d.PAGE_SIZE)

    def op_load(self, g: int, woffset: int, length: int) -> Answer:
        out = bytearray()
        for w in range(woffset, woffset + length):
            st = t.load(self.state, _const(Guest, g), *self._window(w))
            if self._run(st):
                return Answer(fault=True)
            out.append(self.get(st.value))
        return Answer(0, bytes(out))

    def op_store(self, g: int, woffset: int, data: bytes) -> Answer:
        for w, b in zip(range(woffset, woffset + len(data)), data, strict=True):
            slot, off = self._window(w)
            page = self.get(self.state.map_page[_const(Guest, g), slot])
            self.touch(page * d.PAGE_SIZE + self.get(off))
            st = t.store(self.state, _const(Guest, g), *self._window(w), _const(Byte, b),
                         self.free_frame())
            if self._run(st):
                return Answer(fault=True)
        return Answer(0, None)

    # ------------------------------------------------------------ the common view

    def touch(self, *positions: int) -> None:
        """Remember file positions a request aimed at (and their neighbours): the views
        compare file bytes there, which is where a wrong byte could be."""
        for q in positions:
            self.touched.update(x for x in (q - 1, q, q + 1) if x >= 0)

    def view(self) -> dict[str, object]:
        """The state as the spec would describe it: file bytes at the touched positions."""
        s, get = self.state, self.get
        inodes: dict[int, tuple[object, ...]] = {}
        for i in range(ROOT, get(s.next_ino)):
            ii = _const(Inode, i)
            if not get(s.alive[ii]):
                continue
            if get(s.is_dir[ii]):
                entries = {}
                for name in NAMES:
                    child = get(s.dent[ii, self.name(name)])
                    if child:
                        entries[name] = child
                inodes[i] = ("dir", entries)
            else:
                size = get(s.size[ii])
                end = -(-size // d.PAGE_SIZE) * d.PAGE_SIZE
                inodes[i] = ("reg", size, tuple(
                    (q, get(t.read_byte(s, ii, _const(d.Size, q))))
                    for q in sorted(self.touched) if q < end))
        guests = []
        for g in range(self.config.guests):
            gg = _const(Guest, g)
            next_node, next_fh = get(s.next_node[gg]), get(s.next_fh[gg])
            nodes = {}
            for n in range(1, next_node):
                i = get(s.node_ino[gg, _const(Nodeid, n)])
                if i:
                    nodes[n] = (i, get(s.node_cnt[gg, _const(Nodeid, n)]))
            handles = {}
            for h in range(1, next_fh):
                hh = _const(Handle, h)
                i = get(s.fh_ino[gg, hh])
                if i:
                    handles[h] = (i, bool(get(s.fh_rd[gg, hh])), bool(get(s.fh_wr[gg, hh])))
            window = []
            for r in range(self.config.window_ranges):
                first, last = (_const(d.Slot, r * d.RANGE_PAGES + k)
                               for k in (0, d.RANGE_PAGES - 1))
                ends = [(get(s.map_ino[gg, x]), get(s.map_page[gg, x]), get(s.map_wr[gg, x]))
                        for x in (first, last)]
                i, page, wr = ends[0]
                consistent = ends[1] == (i, page + d.RANGE_PAGES - 1, wr)
                window.append(None if not i else (i, page * d.PAGE_SIZE, bool(wr), consistent))
            guests.append((bool(get(s.conn[gg])), next_node, next_fh, nodes, handles,
                           tuple(window)))
        return {"next_ino": get(s.next_ino), "inodes": inodes, "guests": guests}


def spec_view(state: State, touched: set[int]) -> dict[str, object]:
    """The same projection of a spec state (only file handles: the design has no
    directory handles)."""
    inodes: dict[int, tuple[object, ...]] = {}
    page = state.config.page_size
    for i, inode in state.inodes.items():
        if inode.kind is FileKind.DIR:
            inodes[i] = ("dir", {n: c for n, c in inode.entries.items()})
        else:
            tail_len = -len(inode.data) % page
            body = inode.data + inode.tail + bytes(tail_len - len(inode.tail))
            inodes[i] = ("reg", len(inode.data),
                         tuple((q, body[q]) for q in sorted(touched) if q < len(body)))
    guests = []
    for guest in state.guests:
        nodes = {n: (node.ino, node.nlookup) for n, node in guest.nodes.items()}
        handles = {fh: (h.ino, h.access.can_read, h.access.can_write)
                   for fh, h in guest.handles.items() if h.kind is HandleKind.FILE}
        window = tuple(None if m is None else (m.ino, m.foffset, m.writable, True)
                       for m in guest.window)
        guests.append((guest.connected, guest.next_nodeid, guest.next_fh, nodes, handles,
                       window))
    return {"next_ino": state.next_ino, "inodes": inodes, "guests": guests}
