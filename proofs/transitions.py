"""One transition relation per spec operation, over the design state.

Every operation is ``op(state, *args) -> Step``: ``enabled`` says the arguments are
a legal choice (a free frame to allocate, a connected guest), ``err`` is the errno
the request returns (0 for success, computed by the spec's check order), ``value``
the result, and ``post`` the next state, ``If(enabled and err == 0, new, old)``
field by field. Arguments are z3 terms; nothing here branches in Python on a
symbolic value, so the same function serves the unbounded proofs, bounded model
checking and concrete evaluation in the tie to the spec.

Byte-level data operations (``write`` of one byte, ``load`` of one byte) are the
design's unit: a multi-byte request is the sequence of its bytes, which is how the
tie to the spec runs them.
"""

from __future__ import annotations

import errno as E
from collections.abc import Callable
from dataclasses import dataclass

import z3

from pagefs.proofs import design as d
from pagefs.proofs.design import (
    NONE,
    ROOT,
    Byte,
    Frame,
    Guest,
    Handle,
    Inode,
    Name,
    Nodeid,
    Offset,
    Page,
    Size,
    Slot,
    State,
    page_start,
    position,
    val,
)

EFAULT = E.EFAULT  # a faulting LOAD or STORE, reported to the guest for that access only
WINDOW_PAGES = 16 * d.RANGE_PAGES  # the window every guest gets: 16 ranges of 2 MiB


@dataclass(frozen=True)
class Step:
    """A transition: when it may happen, what it answers, and the state after it."""

    enabled: z3.BoolRef
    err: z3.ArithRef
    value: z3.ExprRef | None
    post: State

    @property
    def ok(self) -> z3.BoolRef:
        return z3.And(self.enabled, self.err == 0)


def checks(*rules: tuple[z3.BoolRef, int]) -> z3.ArithRef:
    """The errno of the first failing rule, in the spec's order; 0 when none fails."""
    result: z3.ArithRef = z3.IntVal(0)
    for failed, code in reversed(rules):
        result = z3.If(failed, z3.IntVal(code), result)
    return result


def step(old: State, new: State, err: z3.ArithRef, enabled: z3.BoolRef = z3.BoolVal(True),
         value: z3.ExprRef | None = None) -> Step:
    return Step(enabled, err, value, d.ite(z3.And(enabled, err == 0), new, old))


def then(first: Step, second: Callable[[State], Step]) -> Step:
    """Run ``second`` on the state ``first`` leaves; the first errno wins."""
    nxt = second(first.post)
    err = z3.If(first.err != 0, first.err, nxt.err)
    enabled = z3.And(first.enabled, z3.Or(first.err != 0, nxt.enabled))
    return Step(enabled, err, nxt.value, d.ite(first.err == 0, nxt.post, first.post))


# ---------------------------------------------------------------- shared pieces

def is_file(s: State, i: z3.ExprRef) -> z3.BoolRef:
    return z3.And(i != NONE, s.alive[i], z3.Not(s.is_dir[i]))


def beyond_eof(s: State, i: z3.ExprRef, page: z3.ExprRef) -> z3.BoolRef:
    """A page wholly beyond end of file: its first byte is at or past the size."""
    return z3.UGE(page_start(page), s.size[i])


def frame_for(s: State, i: z3.ExprRef, page: z3.ExprRef, f: z3.ExprRef
              ) -> tuple[z3.ExprRef, z3.BoolRef, State]:
    """The page cache's frame for (i, page), allocating free frame ``f`` zeroed if none."""
    cached = s.pc[i, page]
    fresh = cached == NONE
    usable = z3.Or(z3.Not(fresh), z3.And(f != NONE, s.owner[f] == NONE))
    zero = d.constant((Offset, Byte), val(Byte, 0))
    allocated = d.update(
        s,
        pc=z3.Store(s.pc, i, page, f),
        owner=z3.Store(s.owner, f, i),
        fpage=z3.Store(s.fpage, f, page),
        fdata=z3.Lambda([fx := z3.FreshConst(Frame, "fx"), ox := z3.FreshConst(Offset, "ox")],
                        z3.If(fx == f, zero[ox], s.fdata[fx, ox])),
    )
    return z3.If(fresh, f, cached), usable, d.ite(fresh, allocated, s)


def put_byte(s: State, frame: z3.ExprRef, off: z3.ExprRef, b: z3.ExprRef) -> State:
    return d.update(s, fdata=z3.Store(s.fdata, frame, off, b))


def write_byte(s: State, i: z3.ExprRef, pos: z3.ExprRef, b: z3.ExprRef, f: z3.ExprRef
               ) -> tuple[z3.BoolRef, State]:
    """Write one byte at ``pos`` of file ``i`` through its page-cache frame; extend the size."""
    frame, usable, s1 = frame_for(s, i, d.page_of(pos), f)
    s2 = put_byte(s1, frame, d.offset_of(pos), b)
    end = pos + 1
    s3 = d.update(s2, size=z3.Store(s2.size, i, z3.If(z3.UGT(end, s2.size[i]), end, s2.size[i])))
    return z3.And(usable, pos != z3.BitVecVal(-1, Size.size())), s3


def read_byte(s: State, i: z3.ExprRef, pos: z3.ExprRef) -> z3.ExprRef:
    """The byte at ``pos`` of file ``i`` as the page cache holds it (zero in a hole)."""
    frame = s.pc[i, d.page_of(pos)]
    return z3.If(frame == NONE, val(Byte, 0), s.fdata[frame, d.offset_of(pos)])


def truncate(s: State, i: z3.ExprRef, new_size: z3.ExprRef, *, zap: bool = True,
             zero_tail: bool = True) -> State:
    """Set the size; zap window entries beyond the new end, zero the tail, then free frames.

    The order is the design's point (Linux's ``unmap_mapping_range`` before
    ``truncate_inode_pages``): no guest entry may still reach a frame once it is freed.
    """
    gone = lambda page: z3.UGE(page_start(page), new_size)  # noqa: E731
    g, sl, j, p, fr, o = (z3.FreshConst(k, n) for n, k in (
        ("g", Guest), ("sl", Slot), ("j", Inode), ("p", Page), ("fr", Frame), ("o", Offset)))
    pte = s.pte
    if zap:
        pte = z3.Lambda([g, sl], z3.If(z3.And(s.map_ino[g, sl] == i, gone(s.map_page[g, sl])),
                                       val(Frame, NONE), s.pte[g, sl]))
    fdata = s.fdata
    if zero_tail:
        last = s.pc[i, d.page_of(new_size)]
        fdata = z3.Lambda([fr, o], z3.If(z3.And(fr == last, last != NONE,
                                                z3.UGE(o, d.offset_of(new_size))),
                                         val(Byte, 0), s.fdata[fr, o]))
    return d.update(
        s,
        size=z3.Store(s.size, i, new_size),
        pte=pte,
        fdata=fdata,
        pc=z3.Lambda([j, p], z3.If(z3.And(j == i, gone(p)), val(Frame, NONE), s.pc[j, p])),
        owner=z3.Lambda([fr], z3.If(z3.And(s.owner[fr] == i, gone(s.fpage[fr])),
                                    val(Inode, NONE), s.owner[fr])),
    )


def new_inode(s: State, parent: z3.ExprRef, name: z3.ExprRef, directory: bool
              ) -> tuple[z3.BoolRef, z3.ArithRef, z3.ExprRef, State]:
    """Create an empty file or directory under ``parent``; identities are never reissued."""
    i = s.next_ino
    err = checks(
        (z3.Not(z3.And(parent != NONE, s.alive[parent])), E.ENOENT),
        (z3.Not(s.is_dir[parent]), E.ENOTDIR),
        (name == NONE, E.EINVAL),
        (s.dent[parent, name] != NONE, E.EEXIST),
    )
    new = d.update(
        s,
        alive=z3.Store(s.alive, i, True),
        is_dir=z3.Store(s.is_dir, i, directory),
        size=z3.Store(s.size, i, val(Size, 0)),
        dent=z3.Store(s.dent, parent, name, i),
        next_ino=i + 1,
    )
    return i != z3.BitVecVal(-1, Inode.size()), err, i, new


def empty_dir(s: State, i: z3.ExprRef) -> z3.BoolRef:
    n = z3.FreshConst(Name, "n")
    return z3.ForAll([n], s.dent[i, n] == NONE)


def remove_entry(s: State, parent: z3.ExprRef, name: z3.ExprRef, directory: bool
                 ) -> tuple[z3.ArithRef, State]:
    """UNLINK or RMDIR: drop the name; the inode lives on while anything holds it (EVICT)."""
    t = s.dent[parent, name]
    kind = (z3.Not(s.is_dir[t]), E.ENOTDIR) if directory else (s.is_dir[t], E.EISDIR)
    rules = [
        (z3.Not(z3.And(parent != NONE, s.alive[parent])), E.ENOENT),
        (z3.Not(s.is_dir[parent]), E.ENOTDIR),
        (t == NONE, E.ENOENT),
        kind,
    ]
    if directory:
        rules.append((z3.Not(empty_dir(s, t)), E.ENOTEMPTY))
    return checks(*rules), d.update(s, dent=z3.Store(s.dent, parent, name, val(Inode, NONE)))


def move_entry(s: State, p1: z3.ExprRef, n1: z3.ExprRef, p2: z3.ExprRef, n2: z3.ExprRef
               ) -> tuple[z3.ArithRef, State]:
    """RENAME: the target name, if any, is replaced (its inode lives on while held)."""
    t1, t2 = s.dent[p1, n1], s.dent[p2, n2]
    live_dir = lambda p: z3.And(p != NONE, s.alive[p])  # noqa: E731
    err = checks(
        (z3.Not(z3.And(live_dir(p1), live_dir(p2))), E.ENOENT),
        (z3.Not(z3.And(s.is_dir[p1], s.is_dir[p2])), E.ENOTDIR),
        (t1 == NONE, E.ENOENT),
        (n2 == NONE, E.EINVAL),
        (z3.And(t2 != NONE, s.is_dir[t1], z3.Not(s.is_dir[t2])), E.ENOTDIR),
        (z3.And(t2 != NONE, z3.Not(s.is_dir[t1]), s.is_dir[t2]), E.EISDIR),
        (z3.And(t2 != NONE, t2 != t1, s.is_dir[t2], z3.Not(empty_dir(s, t2))), E.ENOTEMPTY),
    )
    moved = z3.Store(z3.Store(s.dent, p2, n2, t1), p1, n1, val(Inode, NONE))
    return err, d.update(s, dent=z3.If(t1 == t2, s.dent, moved))


def node(s: State, g: z3.ExprRef, n: z3.ExprRef) -> z3.ExprRef:
    return s.node_ino[g, n]


def stale(s: State, g: z3.ExprRef, n: z3.ExprRef) -> tuple[tuple[z3.BoolRef, int], ...]:
    """A nodeid this guest does not hold fails with ENOENT; one whose inode died, ESTALE."""
    i = node(s, g, n)
    return ((i == NONE, E.ENOENT), (z3.Not(s.alive[i]), E.ESTALE))


def handle_open(s: State, g: z3.ExprRef, h: z3.ExprRef) -> z3.BoolRef:
    return s.fh_ino[g, h] != NONE


def in_window(start: z3.ExprRef, count: z3.ExprRef) -> z3.BoolRef:
    """[start, start+count) is a whole number of aligned ranges inside the window."""
    aligned = lambda x: z3.URem(x, d.RANGE_PAGES) == 0  # noqa: E731
    end = z3.ZeroExt(1, start) + z3.ZeroExt(1, count)
    return z3.And(aligned(start), aligned(count), count != 0, z3.ULE(end, WINDOW_PAGES))


def slot_in(sl: z3.ExprRef, start: z3.ExprRef, count: z3.ExprRef) -> z3.BoolRef:
    return z3.And(z3.UGE(sl, start), z3.ULT(sl - start, count))


# ---------------------------------------------------------------- host operations

def host_write(s: State, i: z3.ExprRef, pos: z3.ExprRef, b: z3.ExprRef, f: z3.ExprRef) -> Step:
    """The host's own process writes one byte: it lands in the page-cache frame every
    guest mapping resolves to (COH-READ)."""
    usable, new = write_byte(s, i, pos, b, f)
    err = checks((z3.Not(z3.And(i != NONE, s.alive[i])), E.ENOENT), (s.is_dir[i], E.EISDIR))
    return step(s, new, err, z3.Or(err != 0, usable))


def host_truncate(s: State, i: z3.ExprRef, new_size: z3.ExprRef) -> Step:
    err = checks((z3.Not(z3.And(i != NONE, s.alive[i])), E.ENOENT), (s.is_dir[i], E.EISDIR))
    return step(s, truncate(s, i, new_size), err)


def host_create(s: State, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    enabled, err, i, new = new_inode(s, parent, name, directory=False)
    return step(s, new, err, enabled, i)


def host_mkdir(s: State, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    enabled, err, i, new = new_inode(s, parent, name, directory=True)
    return step(s, new, err, enabled, i)


def host_unlink(s: State, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    err, new = remove_entry(s, parent, name, directory=False)
    return step(s, new, err)


def host_rmdir(s: State, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    err, new = remove_entry(s, parent, name, directory=True)
    return step(s, new, err)


def host_rename(s: State, p1: z3.ExprRef, n1: z3.ExprRef, p2: z3.ExprRef, n2: z3.ExprRef
                ) -> Step:
    err, new = move_entry(s, p1, n1, p2, n2)
    return step(s, new, err)


def evict(s: State, i: z3.ExprRef) -> Step:
    """The host drops an inode nothing holds: no name, no open handle, no mapping.

    Only then are its frames freed, which is why a mapping outlives RELEASE and an
    unlinked file keeps its data while held (LIFETIME). Not a request: the moment the
    last reference goes; the abstract spec does not see it.
    """
    g, h, sl, p, n, fr = (z3.FreshConst(k, x) for x, k in (
        ("g", Guest), ("h", Handle), ("sl", Slot), ("p", Inode), ("n", Name), ("fr", Frame)))
    unheld = z3.And(
        z3.ForAll([p, n], s.dent[p, n] != i),
        z3.ForAll([g, h], s.fh_ino[g, h] != i),
        z3.ForAll([g, sl], s.map_ino[g, sl] != i),
    )
    pg = z3.FreshConst(Page, "pg")
    new = d.update(
        s,
        alive=z3.Store(s.alive, i, False),
        pc=z3.Lambda([p, pg], z3.If(p == i, val(Frame, NONE), s.pc[p, pg])),
        owner=z3.Lambda([fr], z3.If(s.owner[fr] == i, val(Inode, NONE), s.owner[fr])),
    )
    enabled = z3.And(i != NONE, i != ROOT, s.alive[i], empty_dir(s, i), unheld)
    return step(s, new, z3.IntVal(0), enabled)


# ---------------------------------------------------------------- guest requests

def init(s: State, g: z3.ExprRef) -> Step:
    """A guest connects: it holds the root nodeid and nothing else."""
    root_n, root_i = val(Nodeid, ROOT), val(Inode, ROOT)
    first = z3.If(z3.ULT(s.next_node[g], ROOT + 1), val(Nodeid, ROOT + 1), s.next_node[g])
    first_fh = z3.If(s.next_fh[g] == 0, val(Handle, 1), s.next_fh[g])
    new = d.update(
        s,
        conn=z3.Store(s.conn, g, True),
        node_ino=z3.Store(s.node_ino, g, root_n, root_i),
        ino_node=z3.Store(s.ino_node, g, root_i, root_n),
        node_cnt=z3.Store(s.node_cnt, g, root_n, z3.IntVal(1)),
        node_hist=z3.Store(s.node_hist, g, root_n, root_i),
        next_node=z3.Store(s.next_node, g, first),
        next_fh=z3.Store(s.next_fh, g, first_fh),
    )
    return step(s, new, z3.IntVal(0), z3.Not(s.conn[g]))


def disconnect(s: State, g: z3.ExprRef) -> Step:
    """RECLAIM: a guest goes away; every nodeid, handle and mapping it held is released."""
    x, h, sl, i = (z3.FreshConst(k, n) for n, k in (
        ("x", Guest), ("h", Handle), ("sl", Slot), ("i", Inode)))
    mine = lambda arr, idx, dead: z3.Lambda(  # noqa: E731
        [x, idx], z3.If(x == g, dead, arr[x, idx]))
    n = z3.FreshConst(Nodeid, "n")
    new = d.update(
        s,
        conn=z3.Store(s.conn, g, False),
        node_ino=mine(s.node_ino, n, val(Inode, NONE)),
        ino_node=mine(s.ino_node, i, val(Nodeid, NONE)),
        node_cnt=mine(s.node_cnt, n, z3.IntVal(0)),
        fh_ino=mine(s.fh_ino, h, val(Inode, NONE)),
        fh_released=z3.Lambda([x, h], z3.Or(s.fh_released[x, h],
                                            z3.And(x == g, s.fh_issued[x, h]))),
        map_ino=mine(s.map_ino, sl, val(Inode, NONE)),
        pte=mine(s.pte, sl, val(Frame, NONE)),
    )
    return step(s, new, z3.IntVal(0), s.conn[g])


def first_meaning(s: State, g: z3.ExprRef, n: z3.ExprRef, i: z3.ExprRef) -> z3.ExprRef:
    """Ghost: a nodeid's history records only the first inode it was bound to."""
    return z3.If(s.node_hist[g, n] == NONE, i, s.node_hist[g, n])


def lookup(s: State, g: z3.ExprRef, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    """LOOKUP: the child's nodeid, the one this guest already has for it or a new one."""
    pi = node(s, g, parent)
    c = s.dent[pi, name]
    err = checks(*stale(s, g, parent), (z3.Not(s.is_dir[pi]), E.ENOTDIR), (c == NONE, E.ENOENT))
    have = s.ino_node[g, c]
    fresh = s.next_node[g]
    n = z3.If(have != NONE, have, fresh)
    new = d.update(
        s,
        node_ino=z3.Store(s.node_ino, g, n, c),
        ino_node=z3.Store(s.ino_node, g, c, n),
        node_cnt=z3.Store(s.node_cnt, g, n, z3.If(have != NONE, s.node_cnt[g, n] + 1, 1)),
        node_hist=z3.Store(s.node_hist, g, n, first_meaning(s, g, n, c)),
        next_node=z3.If(have != NONE, s.next_node,
                        z3.Store(s.next_node, g, fresh + 1)),
    )
    enabled = z3.And(s.conn[g], fresh != z3.BitVecVal(-1, Nodeid.size()))
    return step(s, new, err, enabled, n)


def forget(s: State, g: z3.ExprRef, n: z3.ExprRef, count: z3.ArithRef) -> Step:
    """FORGET: drop ``count`` lookups; at zero the nodeid is gone (never to be reissued)."""
    i = node(s, g, n)
    left = s.node_cnt[g, n] - count
    dropped = d.update(
        s,
        node_ino=z3.Store(s.node_ino, g, n, val(Inode, NONE)),
        ino_node=z3.Store(s.ino_node, g, i, val(Nodeid, NONE)),
        node_cnt=z3.Store(s.node_cnt, g, n, z3.IntVal(0)),
    )
    kept = d.update(s, node_cnt=z3.Store(s.node_cnt, g, n, left))
    applies = z3.And(i != NONE, n != ROOT)
    new = d.ite(applies, d.ite(left <= 0, dropped, kept), s)
    return step(s, new, z3.IntVal(0), z3.And(s.conn[g], count > 0))


def open_(s: State, g: z3.ExprRef, n: z3.ExprRef, writable: z3.BoolRef) -> Step:
    """OPEN: a new handle, never one issued before to this guest (HANDLE)."""
    i = node(s, g, n)
    err = checks(*stale(s, g, n), (s.is_dir[i], E.EISDIR),
                 (z3.And(writable, s.read_only), E.EROFS))
    h = s.next_fh[g]
    new = d.update(
        s,
        fh_ino=z3.Store(s.fh_ino, g, h, i),
        fh_wr=z3.Store(s.fh_wr, g, h, writable),
        fh_issued=z3.Store(s.fh_issued, g, h, True),
        next_fh=z3.Store(s.next_fh, g, h + 1),
    )
    enabled = z3.And(s.conn[g], h != z3.BitVecVal(-1, Handle.size()))
    return step(s, new, err, enabled, h)


def release(s: State, g: z3.ExprRef, h: z3.ExprRef) -> Step:
    """RELEASE: the handle ends; mappings made through it stay (LIFETIME)."""
    err = checks((z3.Not(handle_open(s, g, h)), E.EBADF))
    new = d.update(s, fh_ino=z3.Store(s.fh_ino, g, h, val(Inode, NONE)),
                   fh_released=z3.Store(s.fh_released, g, h, True))
    return step(s, new, err, s.conn[g])


def read(s: State, g: z3.ExprRef, h: z3.ExprRef, pos: z3.ExprRef) -> Step:
    """READ of one byte: the host's current byte, or nothing at or past end of file."""
    i = s.fh_ino[g, h]
    err = checks((z3.Not(handle_open(s, g, h)), E.EBADF))
    inside = z3.ULT(pos, s.size[i])
    return step(s, s, err, s.conn[g], z3.If(inside, z3.ZeroExt(1, read_byte(s, i, pos)),
                                            z3.BitVecVal(256, 9)))


def write(s: State, g: z3.ExprRef, h: z3.ExprRef, pos: z3.ExprRef, b: z3.ExprRef,
          f: z3.ExprRef) -> Step:
    """WRITE of one byte through a handle opened for writing."""
    i = s.fh_ino[g, h]
    err = checks((z3.Not(handle_open(s, g, h)), E.EBADF), (z3.Not(s.fh_wr[g, h]), E.EBADF),
                 (s.read_only, E.EROFS))
    usable, new = write_byte(s, i, pos, b, f)
    return step(s, new, err, z3.And(s.conn[g], z3.Or(err != 0, usable)))


def setattr_size(s: State, g: z3.ExprRef, n: z3.ExprRef, new_size: z3.ExprRef) -> Step:
    """SETATTR with a size: a guest-requested truncate, by the same rule as the host's."""
    i = node(s, g, n)
    err = checks((s.read_only, E.EROFS), *stale(s, g, n), (s.is_dir[i], E.EISDIR))
    return step(s, truncate(s, i, new_size), err, s.conn[g])


def _guest_ns(s: State, g: z3.ExprRef, parent: z3.ExprRef) -> tuple[tuple[z3.BoolRef, int], ...]:
    return ((s.read_only, E.EROFS), *stale(s, g, parent))


def _guarded(s: State, g: z3.ExprRef, pre: tuple[tuple[z3.BoolRef, int], ...], inner: Step
             ) -> Step:
    err0 = checks(*pre)
    err = z3.If(err0 != 0, err0, inner.err)
    enabled = z3.And(s.conn[g], z3.Or(err0 != 0, inner.enabled))
    return Step(enabled, err, inner.value, d.ite(err0 == 0, inner.post, s))


def create(s: State, g: z3.ExprRef, parent: z3.ExprRef, name: z3.ExprRef,
           writable: z3.BoolRef) -> Step:
    """CREATE: a new file, its nodeid and an open handle, as one request."""
    made = _guarded(s, g, _guest_ns(s, g, parent), host_create(s, node(s, g, parent), name))
    looked = then(made, lambda s1: lookup(s1, g, parent, name))
    return then(looked, lambda s2: open_(s2, g, looked.value, writable))


def mkdir(s: State, g: z3.ExprRef, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    made = _guarded(s, g, _guest_ns(s, g, parent), host_mkdir(s, node(s, g, parent), name))
    return then(made, lambda s1: lookup(s1, g, parent, name))


def unlink(s: State, g: z3.ExprRef, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    return _guarded(s, g, _guest_ns(s, g, parent), host_unlink(s, node(s, g, parent), name))


def rmdir(s: State, g: z3.ExprRef, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    return _guarded(s, g, _guest_ns(s, g, parent), host_rmdir(s, node(s, g, parent), name))


def rename(s: State, g: z3.ExprRef, p1: z3.ExprRef, n1: z3.ExprRef, p2: z3.ExprRef,
           n2: z3.ExprRef) -> Step:
    pre = (*_guest_ns(s, g, p1), *stale(s, g, p2))
    return _guarded(s, g, pre, host_rename(s, node(s, g, p1), n1, node(s, g, p2), n2))


def setupmapping(s: State, g: z3.ExprRef, h: z3.ExprRef, fpage: z3.ExprRef,
                 count: z3.ExprRef, writable: z3.BoolRef, start: z3.ExprRef) -> Step:
    """SETUPMAPPING: window pages [start, start+count) map file pages from ``fpage``.

    Entries are not resolved here: the first access resolves each to the frame the
    page cache holds at that moment. A writable mapping needs a handle opened for
    writing (ACCESS-MODE) and a writable export (RO-EXPORT).
    """
    i = s.fh_ino[g, h]
    fits = z3.ULE(z3.ZeroExt(1, fpage) + z3.ZeroExt(1, count), 1 << Page.size())
    err = checks(
        (z3.Not(handle_open(s, g, h)), E.EBADF),
        (z3.Not(z3.And(in_window(start, count), fits, z3.URem(fpage, d.RANGE_PAGES) == 0)),
         E.EINVAL),
        (z3.And(writable, s.read_only), E.EROFS),
        (z3.And(writable, z3.Not(s.fh_wr[g, h])), E.EACCES),
    )
    x, sl = z3.FreshConst(Guest, "x"), z3.FreshConst(Slot, "sl")
    here = lambda: z3.And(x == g, slot_in(sl, start, count))  # noqa: E731
    put = lambda arr, v: z3.Lambda([x, sl], z3.If(here(), v, arr[x, sl]))  # noqa: E731
    new = d.update(
        s,
        map_ino=put(s.map_ino, i),
        map_page=put(s.map_page, fpage + (sl - start)),
        map_wr=put(s.map_wr, writable),
        map_via_wr=put(s.map_via_wr, s.fh_wr[g, h]),
        pte=put(s.pte, val(Frame, NONE)),
    )
    return step(s, new, err, s.conn[g])


def removemapping(s: State, g: z3.ExprRef, start: z3.ExprRef, count: z3.ExprRef) -> Step:
    """REMOVEMAPPING: the window pages go back to free; the file may then be evicted."""
    err = checks((z3.Not(in_window(start, count)), E.EINVAL))
    x, sl = z3.FreshConst(Guest, "x"), z3.FreshConst(Slot, "sl")
    here = z3.And(x == g, slot_in(sl, start, count))
    new = d.update(
        s,
        map_ino=z3.Lambda([x, sl], z3.If(here, val(Inode, NONE), s.map_ino[x, sl])),
        pte=z3.Lambda([x, sl], z3.If(here, val(Frame, NONE), s.pte[x, sl])),
    )
    return step(s, new, err, s.conn[g])


# ---------------------------------------------------------------- guest memory

def load(s: State, g: z3.ExprRef, sl: z3.ExprRef, off: z3.ExprRef) -> Step:
    """LOAD of one byte at window page ``sl``: it faults (EFAULT, nothing else changes)
    when the page is free or wholly beyond end of file; otherwise it resolves the
    entry to the page cache's frame and returns its byte (zero in a hole)."""
    i, p = s.map_ino[g, sl], s.map_page[g, sl]
    err = checks((i == NONE, EFAULT), (beyond_eof(s, i, p), EFAULT))
    frame = z3.If(s.pte[g, sl] != NONE, s.pte[g, sl], s.pc[i, p])
    byte = z3.If(frame == NONE, val(Byte, 0), s.fdata[frame, off])
    new = d.update(s, pte=z3.Store(s.pte, g, sl, frame))
    return step(s, new, err, s.conn[g], byte)


def store(s: State, g: z3.ExprRef, sl: z3.ExprRef, off: z3.ExprRef, b: z3.ExprRef,
          f: z3.ExprRef) -> Step:
    """STORE of one byte: faults on a free, read-only or wholly-beyond-EOF page; else
    it lands in the page cache's frame, seen at once by the host and every peer
    (COH-WRITE, COH-PEER). A byte stored in the tail past end of file is dropped, as
    POSIX says of the partial last page of a mapping."""
    i, p = s.map_ino[g, sl], s.map_page[g, sl]
    err = checks((i == NONE, EFAULT), (z3.Not(s.map_wr[g, sl]), EFAULT),
                 (beyond_eof(s, i, p), EFAULT))
    resolved = s.pte[g, sl]
    frame, usable, s1 = frame_for(s, i, p, f)
    frame = z3.If(resolved != NONE, resolved, frame)
    s1 = d.ite(resolved != NONE, s, s1)
    inside = z3.ULT(position(p, off), s.size[i])
    s2 = d.ite(inside, put_byte(s1, frame, off, b), s1)
    new = d.update(s2, pte=z3.Store(s2.pte, g, sl, frame))
    return step(s, new, err, z3.And(s.conn[g], z3.Or(err != 0, resolved != NONE, usable)))


# ---------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Operation:
    """A transition with its argument names and sorts, so proofs can make them symbolic."""

    name: str
    fn: Callable[..., Step]
    args: tuple[tuple[str, z3.SortRef], ...]
    side: str  # "host", "guest request", "guest memory" or "design" (not visible in the spec)

    def symbolic_args(self, tag: str = "") -> list[z3.ExprRef]:
        return [z3.Const(f"{a}{tag}", sort) for a, sort in self.args]

    def __call__(self, s: State, *args: z3.ExprRef) -> Step:
        return self.fn(s, *args)


_g, _h, _n, _i = ("g", Guest), ("h", Handle), ("n", Nodeid), ("i", Inode)
_nm, _f, _b, _sl = ("name", Name), ("frame", Frame), ("byte", Byte), ("slot", Slot)
_pos, _wr, _page = ("pos", Size), ("writable", z3.BoolSort()), ("page", Page)
_B = z3.BoolSort()

OPERATIONS: tuple[Operation, ...] = (
    Operation("host_write", host_write, (_i, _pos, _b, _f), "host"),
    Operation("host_truncate", host_truncate, (_i, ("size", Size)), "host"),
    Operation("host_create", host_create, (("dir", Inode), _nm), "host"),
    Operation("host_mkdir", host_mkdir, (("dir", Inode), _nm), "host"),
    Operation("host_unlink", host_unlink, (("dir", Inode), _nm), "host"),
    Operation("host_rmdir", host_rmdir, (("dir", Inode), _nm), "host"),
    Operation("host_rename", host_rename,
              (("dir", Inode), _nm, ("newdir", Inode), ("newname", Name)), "host"),
    Operation("evict", evict, (_i,), "design"),
    Operation("init", init, (_g,), "guest request"),
    Operation("disconnect", disconnect, (_g,), "guest request"),
    Operation("lookup", lookup, (_g, ("parent", Nodeid), _nm), "guest request"),
    Operation("forget", forget, (_g, _n, ("count", z3.IntSort())), "guest request"),
    Operation("open", open_, (_g, _n, _wr), "guest request"),
    Operation("release", release, (_g, _h), "guest request"),
    Operation("read", read, (_g, _h, _pos), "guest request"),
    Operation("write", write, (_g, _h, _pos, _b, _f), "guest request"),
    Operation("setattr", setattr_size, (_g, _n, ("size", Size)), "guest request"),
    Operation("create", create, (_g, ("parent", Nodeid), _nm, _wr), "guest request"),
    Operation("mkdir", mkdir, (_g, ("parent", Nodeid), _nm), "guest request"),
    Operation("unlink", unlink, (_g, ("parent", Nodeid), _nm), "guest request"),
    Operation("rmdir", rmdir, (_g, ("parent", Nodeid), _nm), "guest request"),
    Operation("rename", rename, (_g, ("parent", Nodeid), _nm, ("newparent", Nodeid),
                                 ("newname", Name)), "guest request"),
    Operation("setupmapping", setupmapping,
              (_g, _h, ("fpage", Page), ("count", Slot), _wr, ("start", Slot)), "guest request"),
    Operation("removemapping", removemapping, (_g, ("start", Slot), ("count", Slot)),
              "guest request"),
    Operation("load", load, (_g, _sl, ("offset", Offset)), "guest memory"),
    Operation("store", store, (_g, _sl, ("offset", Offset), _b, _f), "guest memory"),
)
BY_NAME = {op.name: op for op in OPERATIONS}
