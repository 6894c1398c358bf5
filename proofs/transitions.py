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
    val,
)

EFAULT = E.EFAULT  # a faulting LOAD or STORE, reported to the guest for that access only


@dataclass(frozen=True)
class Step:
    """A transition: when it may happen, what it answers, and the state after it."""

    enabled: z3.BoolRef
    err: z3.ArithRef
    value: z3.ExprRef | None
    post: State
    new: State  # the state after it when it succeeds (``post`` without the guard)

    @property
    def ok(self) -> z3.BoolRef:
        return z3.And(self.enabled, self.err == 0)


def checks(*rules: tuple[z3.BoolRef, int]) -> z3.ArithRef:
    """The errno of the first failing rule, in the spec's order; 0 when none fails."""
    result: z3.ArithRef = z3.IntVal(0)
    for failed, code in reversed(rules):
        result = z3.If(failed, z3.IntVal(code), result)
    return result


def step(old: State, new: State, err: z3.ArithRef, enabled: z3.BoolRef | None = None,
         value: z3.ExprRef | None = None) -> Step:
    enabled = z3.BoolVal(True) if enabled is None else enabled
    return Step(enabled, err, value, d.ite(z3.And(enabled, err == 0), new, old), new)


# ---------------------------------------------------------------- shared pieces

def fresh(sort: z3.SortRef, name: str) -> z3.ExprRef:
    """A bound variable for a Lambda or quantifier that no argument can be captured by."""
    return z3.FreshConst(sort, name)


def zeroed_from(s: State, i: z3.ExprRef, pos: z3.ExprRef) -> State:
    """Zero the bytes of ``i``'s cached page holding ``pos``, from ``pos`` to the page's
    end: what lay past end of file never becomes file data."""
    frame = s.pc[i, d.page_of(pos)]
    fr, o = fresh(Frame, "fr"), fresh(Offset, "o")
    hit = z3.And(fr == frame, frame != NONE, z3.UGE(o, d.offset_of(pos)))
    return d.update(s, fdata=z3.Lambda([fr, o], z3.If(hit, val(Byte, 0), s.fdata[fr, o])))


def beyond_eof(s: State, i: z3.ExprRef, page: z3.ExprRef) -> z3.BoolRef:
    """A page wholly beyond end of file: its first byte is at or past the size."""
    return z3.UGE(page_start(page), s.size[i])


def frame_for(s: State, i: z3.ExprRef, page: z3.ExprRef, f: z3.ExprRef
              ) -> tuple[z3.ExprRef, z3.BoolRef, State]:
    """The page cache's frame for (i, page), allocating free frame ``f`` zeroed if none."""
    cached = s.pc[i, page]
    missing = cached == NONE
    usable = z3.Or(z3.Not(missing), z3.And(f != NONE, s.owner[f] == NONE))
    fx, ox = fresh(Frame, "fx"), fresh(Offset, "ox")
    allocated = d.update(
        s,
        pc=z3.Store(s.pc, i, page, f),
        owner=z3.Store(s.owner, f, i),
        fpage=z3.Store(s.fpage, f, page),
        fdata=z3.Lambda([fx, ox], z3.If(fx == f, val(Byte, 0), s.fdata[fx, ox])),
    )
    return z3.If(missing, f, cached), usable, d.ite(missing, allocated, s)


def put_byte(s: State, frame: z3.ExprRef, off: z3.ExprRef, b: z3.ExprRef) -> State:
    return d.update(s, fdata=z3.Store(s.fdata, frame, off, b))


def write_byte(s: State, i: z3.ExprRef, pos: z3.ExprRef, b: z3.ExprRef, f: z3.ExprRef
               ) -> tuple[z3.BoolRef, State]:
    """Write one byte at ``pos`` of file ``i`` through its page-cache frame. Past the end,
    the old tail is zeroed first and the size grows (the gap reads as zeros)."""
    old = s.size[i]
    extends = z3.UGE(pos, old)
    s0 = d.ite(extends, d.update(zeroed_from(s, i, old), size=z3.Store(s.size, i, pos + 1)), s)
    frame, usable, s1 = frame_for(s0, i, d.page_of(pos), f)
    return z3.And(usable, pos != z3.BitVecVal(-1, Size.size())), put_byte(
        s1, frame, d.offset_of(pos), b)


def read_byte(s: State, i: z3.ExprRef, pos: z3.ExprRef) -> z3.ExprRef:
    """The byte at ``pos`` of file ``i`` as the page cache holds it (zero in a hole)."""
    frame = s.pc[i, d.page_of(pos)]
    return z3.If(frame == NONE, val(Byte, 0), s.fdata[frame, d.offset_of(pos)])


def _gone(new_size: z3.ExprRef) -> Callable[[z3.ExprRef], z3.BoolRef]:
    """A page wholly beyond the new end of file."""
    return lambda page: z3.UGE(page_start(page), new_size)


def resized(s: State, i: z3.ExprRef, new_size: z3.ExprRef) -> State:
    """Truncate's first sub-step: the new size, and the page tail past it zeroed."""
    old = s.size[i]
    low = z3.If(z3.ULT(new_size, old), new_size, old)
    s1 = d.ite(new_size == old, s, zeroed_from(s, i, low))
    return d.update(s1, size=z3.Store(s.size, i, new_size))


def zapped(s: State, i: z3.ExprRef, new_size: z3.ExprRef) -> State:
    """Truncate's second sub-step: every window entry on a page beyond the end is cleared
    (Linux's ``unmap_mapping_range``)."""
    g, sl = fresh(Guest, "g"), fresh(Slot, "sl")
    gone = z3.And(s.map_ino[g, sl] == i, _gone(new_size)(s.map_page[g, sl]))
    return d.update(s, pte=z3.Lambda([g, sl], z3.If(gone, val(Frame, NONE), s.pte[g, sl])))


def dropped(s: State, i: z3.ExprRef, new_size: z3.ExprRef) -> State:
    """Truncate's last sub-step: the frames beyond the end leave the page cache and are
    free (Linux's ``truncate_inode_pages``)."""
    j, p, fr = fresh(Inode, "j"), fresh(Page, "p"), fresh(Frame, "fr")
    gone = _gone(new_size)
    return d.update(
        s,
        pc=z3.Lambda([j, p], z3.If(z3.And(j == i, gone(p)), val(Frame, NONE), s.pc[j, p])),
        owner=z3.Lambda([fr], z3.If(z3.And(s.owner[fr] == i, gone(s.fpage[fr])),
                                    val(Inode, NONE), s.owner[fr])),
    )


def truncate(s: State, i: z3.ExprRef, new_size: z3.ExprRef, *, zap: bool = True,
             drop: bool = True) -> State:
    """Set the size: zero the page tail, zap window entries beyond the new end, then
    free the frames beyond the end.

    The order is the design's point (Linux's ``unmap_mapping_range`` before
    ``truncate_inode_pages``): no guest entry may still reach a frame once it is freed.
    ``zap`` and ``drop`` exist only so that seeded bugs can leave a step out. The three
    sub-steps, taken one at a time against a guest access in flight, are checked in
    ``concurrency.py``.
    """
    s1 = resized(s, i, new_size)
    if zap:
        s1 = zapped(s1, i, new_size)
    return dropped(s1, i, new_size) if drop else s1


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
    n = fresh(Name, "n")
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


def stale(s: State, g: z3.ExprRef, n: z3.ExprRef) -> tuple[z3.BoolRef, int]:
    """A nodeid this guest does not hold (never had, or forgot) is ESTALE."""
    return (node(s, g, n) == NONE, E.ESTALE)


def handle_open(s: State, g: z3.ExprRef, h: z3.ExprRef) -> z3.BoolRef:
    return s.fh_ino[g, h] != NONE


def in_window(s: State, start: z3.ExprRef, count: z3.ExprRef) -> z3.BoolRef:
    """[start, start+count) is a whole number of aligned ranges inside the window."""
    aligned = lambda x: z3.URem(x, d.RANGE_PAGES) == 0  # noqa: E731
    end = z3.ZeroExt(1, start) + z3.ZeroExt(1, count)
    return z3.And(aligned(start), aligned(count), count != 0,
                  z3.ULE(end, z3.ZeroExt(1, s.window_pages)))


def slot_in(sl: z3.ExprRef, start: z3.ExprRef, count: z3.ExprRef) -> z3.BoolRef:
    return z3.And(z3.UGE(sl, start), z3.ULT(sl - start, count))


def session(s: State, g: z3.ExprRef, inner: Step) -> Step:
    """Every request but INIT needs a connected guest: EIO before INIT."""
    idle = z3.Not(s.conn[g])
    return Step(z3.Or(idle, inner.enabled), z3.If(idle, z3.IntVal(E.EIO), inner.err),
                inner.value, d.ite(idle, s, inner.post), inner.new)


# ---------------------------------------------------------------- host operations

def too_big(s: State, end: z3.ExprRef, *, limit: bool = True) -> tuple[z3.BoolRef, int]:
    """A file may not reach past the export's largest size: EFBIG (``limit=False`` is
    for a seeded bug that forgets the check)."""
    return (z3.UGT(end, s.max_size) if limit else z3.BoolVal(False), E.EFBIG)


def host_write(s: State, i: z3.ExprRef, pos: z3.ExprRef, b: z3.ExprRef, f: z3.ExprRef) -> Step:
    """The host's own process writes one byte: it lands in the page-cache frame every
    guest mapping resolves to (COH-READ)."""
    usable, new = write_byte(s, i, pos, b, f)
    err = checks((z3.Not(z3.And(i != NONE, s.alive[i])), E.ENOENT), (s.is_dir[i], E.EISDIR),
                 (z3.UGE(pos, s.max_size), E.EFBIG))
    return step(s, new, err, z3.Or(err != 0, usable))


def host_truncate(s: State, i: z3.ExprRef, new_size: z3.ExprRef, *, zap: bool = True,
                  drop: bool = True) -> Step:
    """The host truncates or extends a file (``zap``/``drop`` are for seeded bugs only)."""
    err = checks((z3.Not(z3.And(i != NONE, s.alive[i])), E.ENOENT), (s.is_dir[i], E.EISDIR),
                 too_big(s, new_size))
    return step(s, truncate(s, i, new_size, zap=zap, drop=drop), err)


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


def unheld(s: State, i: z3.ExprRef, ignore: tuple[str, ...] = ()) -> z3.BoolRef:
    """No name, nodeid, open handle or mapping of any guest refers to inode ``i``
    (``ignore`` leaves kinds of holder out, for seeded bugs only)."""
    g, h, sl, p, n, x = (fresh(k, v) for v, k in (
        ("g", Guest), ("h", Handle), ("sl", Slot), ("p", Inode), ("n", Name), ("x", Nodeid)))
    holders = {
        "names": z3.ForAll([p, n], s.dent[p, n] != i),
        "nodeids": z3.ForAll([g, x], s.node_ino[g, x] != i),
        "handles": z3.ForAll([g, h], s.fh_ino[g, h] != i),
        "mappings": z3.ForAll([g, sl], s.map_ino[g, sl] != i),
    }
    return z3.And([held for kind, held in holders.items() if kind not in ignore])


def evict(s: State, i: z3.ExprRef, *, ignore: tuple[str, ...] = ()) -> Step:
    """The host drops an inode nothing holds (the spec's ``collect``), and only then
    frees its frames: so a mapping outlives RELEASE and an unlinked file keeps its data
    while held (LIFETIME). Not a request: the moment the last reference goes."""
    p, pg, fr = fresh(Inode, "p"), fresh(Page, "pg"), fresh(Frame, "fr")
    new = d.update(
        s,
        alive=z3.Store(s.alive, i, False),
        pc=z3.Lambda([p, pg], z3.If(p == i, val(Frame, NONE), s.pc[p, pg])),
        owner=z3.Lambda([fr], z3.If(s.owner[fr] == i, val(Inode, NONE), s.owner[fr])),
    )
    enabled = z3.And(i != NONE, i != ROOT, s.alive[i], empty_dir(s, i), unheld(s, i, ignore))
    return step(s, new, z3.IntVal(0), enabled)


# ---------------------------------------------------------------- guest requests

def init(s: State, g: z3.ExprRef) -> Step:
    """INIT: the guest's session opens again (it still holds the root nodeid); on a live
    session (a guest reset without unmount) the old session is released first, as by
    DESTROY."""
    reset = d.ite(s.conn[g], destroy(s, g).new, s)
    return step(s, d.update(reset, conn=z3.Store(reset.conn, g, True)), z3.IntVal(0))


def destroy(s: State, g: z3.ExprRef, *, unmap: bool = True) -> Step:
    """DESTROY (or the guest's death), RECLAIM: every nodeid but the root, every handle
    and every mapping the guest held is released; its counters keep running."""
    x, h, sl, i, n = (fresh(k, v) for v, k in (
        ("x", Guest), ("h", Handle), ("sl", Slot), ("i", Inode), ("n", Nodeid)))
    mine = lambda arr, idx, keep, dead: z3.Lambda(  # noqa: E731
        [x, idx], z3.If(z3.And(x == g, z3.Not(keep)), dead, arr[x, idx]))
    new = d.update(
        s,
        conn=z3.Store(s.conn, g, False),
        node_ino=mine(s.node_ino, n, n == ROOT, val(Inode, NONE)),
        ino_node=mine(s.ino_node, i, i == ROOT, val(Nodeid, NONE)),
        node_cnt=z3.Lambda([x, n], z3.If(z3.And(x == g, n != ROOT), z3.IntVal(0),
                                         z3.If(x == g, z3.IntVal(1), s.node_cnt[x, n]))),
        fh_ino=mine(s.fh_ino, h, z3.BoolVal(False), val(Inode, NONE)),
        fh_released=z3.Lambda([x, h], z3.Or(s.fh_released[x, h],
                                            z3.And(x == g, s.fh_issued[x, h]))),
        map_ino=mine(s.map_ino, sl, z3.BoolVal(not unmap), val(Inode, NONE)),
        pte=mine(s.pte, sl, z3.BoolVal(not unmap), val(Frame, NONE)),
    )
    return step(s, new, z3.IntVal(0))


def first_meaning(s: State, g: z3.ExprRef, n: z3.ExprRef, i: z3.ExprRef) -> z3.ExprRef:
    """Ghost: a nodeid's history records only the first inode it was bound to."""
    return z3.If(s.node_hist[g, n] == NONE, i, s.node_hist[g, n])


def remember(s: State, g: z3.ExprRef, c: z3.ExprRef, recycled: z3.ExprRef | None = None
             ) -> tuple[z3.BoolRef, z3.ExprRef, State]:
    """Hand the guest a nodeid for inode ``c``: the one it holds (one more lookup), else
    the next never-used one. ``recycled`` is for a seeded bug that hands out a free,
    formerly used number instead when it can."""
    have = s.ino_node[g, c]
    recycle = z3.BoolVal(False)
    if recycled is not None:
        recycle = z3.And(recycled != NONE, z3.ULT(recycled, s.next_node[g]),
                         s.node_ino[g, recycled] == NONE)
    new_n = z3.If(recycle, recycled, s.next_node[g]) if recycled is not None else s.next_node[g]
    n = z3.If(have != NONE, have, new_n)
    new = d.update(
        s,
        node_ino=z3.Store(s.node_ino, g, n, c),
        ino_node=z3.Store(s.ino_node, g, c, n),
        node_cnt=z3.Store(s.node_cnt, g, n, z3.If(have != NONE, s.node_cnt[g, n] + 1, 1)),
        node_hist=z3.Store(s.node_hist, g, n, first_meaning(s, g, n, c)),
        next_node=z3.If(z3.Or(have != NONE, recycle), s.next_node,
                        z3.Store(s.next_node, g, s.next_node[g] + 1)),
    )
    return s.next_node[g] != z3.BitVecVal(-1, Nodeid.size()), n, new


def lookup(s: State, g: z3.ExprRef, parent: z3.ExprRef, name: z3.ExprRef, *,
           nodeid: z3.ExprRef | None = None) -> Step:
    """LOOKUP: the child's nodeid, the one this guest already has for it or a new one."""
    pi = node(s, g, parent)
    c = s.dent[pi, name]
    err = checks(stale(s, g, parent), (z3.Not(s.is_dir[pi]), E.ENOTDIR),
                 (name == NONE, E.EINVAL), (c == NONE, E.ENOENT))
    usable, n, new = remember(s, g, c, nodeid)
    return session(s, g, step(s, new, err, z3.Or(err != 0, usable), n))


def forget(s: State, g: z3.ExprRef, n: z3.ExprRef, count: z3.ArithRef) -> Step:
    """FORGET: drop ``count`` lookups; at zero the nodeid is gone (never to be reissued).
    It has no reply, so it never fails: an unknown nodeid, the root or a count below one
    is ignored."""
    i = node(s, g, n)
    left = s.node_cnt[g, n] - count
    dropped = d.update(
        s,
        node_ino=z3.Store(s.node_ino, g, n, val(Inode, NONE)),
        ino_node=z3.Store(s.ino_node, g, i, val(Nodeid, NONE)),
        node_cnt=z3.Store(s.node_cnt, g, n, z3.IntVal(0)),
    )
    kept = d.update(s, node_cnt=z3.Store(s.node_cnt, g, n, left))
    applies = z3.And(i != NONE, n != ROOT, count > 0)
    return step(s, d.ite(applies, d.ite(left <= 0, dropped, kept), s), z3.IntVal(0))


def open_file(s: State, g: z3.ExprRef, i: z3.ExprRef, readable: z3.BoolRef,
              writable: z3.BoolRef, trunc: z3.BoolRef, handle: z3.ExprRef | None = None
              ) -> tuple[z3.BoolRef, z3.ExprRef, State]:
    """Hand out the guest's next never-used handle on ``i`` (emptying it for O_TRUNC).
    ``handle`` is for a seeded bug that recycles a free, formerly used number instead."""
    recycle = z3.BoolVal(False)
    if handle is not None:
        recycle = z3.And(handle != NONE, z3.ULT(handle, s.next_fh[g]), s.fh_ino[g, handle] == NONE)
    h = z3.If(recycle, handle, s.next_fh[g]) if handle is not None else s.next_fh[g]
    s1 = d.ite(trunc, truncate(s, i, val(Size, 0)), s)
    new = d.update(
        s1,
        fh_ino=z3.Store(s.fh_ino, g, h, i),
        fh_rd=z3.Store(s.fh_rd, g, h, readable),
        fh_wr=z3.Store(s.fh_wr, g, h, writable),
        fh_issued=z3.Store(s.fh_issued, g, h, True),
        next_fh=z3.If(recycle, s.next_fh, z3.Store(s.next_fh, g, h + 1)),
    )
    return s.next_fh[g] != z3.BitVecVal(-1, Handle.size()), h, new


def open_errors(s: State, i: z3.ExprRef, readable: z3.BoolRef, writable: z3.BoolRef,
                trunc: z3.BoolRef, *, read_only: bool = True
                ) -> tuple[tuple[z3.BoolRef, int], ...]:
    refused = s.read_only if read_only else z3.BoolVal(False)
    return ((z3.Not(z3.Or(readable, writable)), E.EINVAL),
            (z3.And(z3.Or(writable, trunc), refused), E.EROFS),
            (s.is_dir[i], E.EISDIR))


def open_(s: State, g: z3.ExprRef, n: z3.ExprRef, readable: z3.BoolRef,
          writable: z3.BoolRef, trunc: z3.BoolRef, *, handle: z3.ExprRef | None = None,
          read_only: bool = True) -> Step:
    """OPEN: a new handle, never one issued before to this guest (HANDLE). A directory
    is refused with EISDIR (one of the outcomes the spec allows)."""
    i = node(s, g, n)
    err = checks(stale(s, g, n), *open_errors(s, i, readable, writable, trunc,
                                              read_only=read_only))
    usable, h, new = open_file(s, g, i, readable, writable, trunc, handle)
    return session(s, g, step(s, new, err, z3.Or(err != 0, usable), h))


def release(s: State, g: z3.ExprRef, h: z3.ExprRef) -> Step:
    """RELEASE: the handle ends; mappings made through it stay (LIFETIME)."""
    err = checks((z3.Not(handle_open(s, g, h)), E.EBADF))
    new = d.update(s, fh_ino=z3.Store(s.fh_ino, g, h, val(Inode, NONE)),
                   fh_released=z3.Store(s.fh_released, g, h, True))
    return session(s, g, step(s, new, err))


NO_BYTE = z3.BitVecVal(256, 9)  # READ's value past end of file: no byte


def read(s: State, g: z3.ExprRef, h: z3.ExprRef, pos: z3.ExprRef) -> Step:
    """READ of one byte: the host's current byte, or none at or past end of file."""
    i = s.fh_ino[g, h]
    err = checks((z3.Not(handle_open(s, g, h)), E.EBADF), (z3.Not(s.fh_rd[g, h]), E.EBADF))
    inside = z3.ULT(pos, s.size[i])
    value = z3.If(inside, z3.ZeroExt(1, read_byte(s, i, pos)), NO_BYTE)
    return session(s, g, step(s, s, err, value=value))


def write(s: State, g: z3.ExprRef, h: z3.ExprRef, pos: z3.ExprRef, b: z3.ExprRef,
          f: z3.ExprRef, *, limit: bool = True) -> Step:
    """WRITE of one byte through a handle opened for writing, below the size limit
    (``limit=False``: a seeded bug)."""
    i = s.fh_ino[g, h]
    err = checks((z3.Not(handle_open(s, g, h)), E.EBADF), (z3.Not(s.fh_wr[g, h]), E.EBADF),
                 (z3.UGE(pos, s.max_size) if limit else z3.BoolVal(False), E.EFBIG))
    usable, new = write_byte(s, i, pos, b, f)
    return session(s, g, step(s, new, err, z3.Or(err != 0, usable)))


def setattr_size(s: State, g: z3.ExprRef, n: z3.ExprRef, new_size: z3.ExprRef, *,
                 limit: bool = True) -> Step:
    """SETATTR with a size: a guest-requested truncate, by the same rule as the host's
    (``limit=False``: a seeded bug that lets the file grow past the export's limit)."""
    i = node(s, g, n)
    err = checks(stale(s, g, n), (s.is_dir[i], E.EISDIR), too_big(s, new_size, limit=limit),
                 (s.read_only, E.EROFS))
    return session(s, g, step(s, truncate(s, i, new_size), err))


def _then_remember(s: State, g: z3.ExprRef, made: Step) -> Step:
    """After a successful ``made``, the guest holds a nodeid for the inode it names."""
    usable, n, new = remember(made.post, g, made.value)
    return Step(z3.And(made.enabled, z3.Or(made.err != 0, usable)), made.err, n,
                d.ite(made.ok, new, s), new)


def create(s: State, g: z3.ExprRef, parent: z3.ExprRef, name: z3.ExprRef,
           readable: z3.BoolRef, writable: z3.BoolRef, trunc: z3.BoolRef,
           excl: z3.BoolRef) -> Step:
    """CREATE: make the file and open it, as one request; an existing name is opened as
    OPEN would (EEXIST with O_EXCL). The reply's nodeid is remembered like LOOKUP's."""
    pi = node(s, g, parent)
    existing = s.dent[pi, name]
    there = existing != NONE
    err = checks(
        stale(s, g, parent),
        (z3.Not(s.is_dir[pi]), E.ENOTDIR),
        (name == NONE, E.EINVAL),
        (z3.Not(z3.Or(readable, writable)), E.EINVAL),
        (z3.And(there, excl), E.EEXIST),
        *((z3.And(there, c), e) for c, e in open_errors(s, existing, readable, writable, trunc)),
        (z3.And(z3.Not(there), s.read_only), E.EROFS),
    )
    ok_new, _, made_i, made = new_inode(s, pi, name, directory=False)
    target = z3.If(there, existing, made_i)
    s1 = d.ite(there, s, made)
    usable, h, opened = open_file(s1, g, target, readable, writable, trunc)
    inner = step(s, opened, err, z3.Or(err != 0, z3.And(usable, ok_new)), target)
    return session(s, g, _then_remember(s, g, inner))


def mkdir(s: State, g: z3.ExprRef, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    """MKDIR: a new empty directory, and its nodeid."""
    pi = node(s, g, parent)
    ok_new, err, i, new = new_inode(s, pi, name, directory=True)
    err = z3.If(node(s, g, parent) == NONE, z3.IntVal(E.ESTALE),
                z3.If(z3.And(err == 0, s.read_only), z3.IntVal(E.EROFS), err))
    return session(s, g, _then_remember(s, g, step(s, new, err, ok_new, i)))


def _namespace(s: State, g: z3.ExprRef, parents: tuple[z3.ExprRef, ...], inner: Step) -> Step:
    """A guest's namespace change: stale nodeids first, then the host rule, then EROFS."""
    err = checks(*(stale(s, g, p) for p in parents))
    err = z3.If(err != 0, err, z3.If(z3.And(inner.err == 0, s.read_only),
                                      z3.IntVal(E.EROFS), inner.err))
    return session(s, g, Step(inner.enabled, err, inner.value, d.ite(err == 0, inner.post, s),
                              inner.new))


def unlink(s: State, g: z3.ExprRef, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    return _namespace(s, g, (parent,), host_unlink(s, node(s, g, parent), name))


def rmdir(s: State, g: z3.ExprRef, parent: z3.ExprRef, name: z3.ExprRef) -> Step:
    return _namespace(s, g, (parent,), host_rmdir(s, node(s, g, parent), name))


def rename(s: State, g: z3.ExprRef, p1: z3.ExprRef, n1: z3.ExprRef, p2: z3.ExprRef,
           n2: z3.ExprRef) -> Step:
    return _namespace(s, g, (p1, p2), host_rename(s, node(s, g, p1), n1, node(s, g, p2), n2))


def mapping_fits(s: State, fpage: z3.ExprRef, count: z3.ExprRef, start: z3.ExprRef
                 ) -> z3.BoolRef:
    """Whole ranges inside the window, mapping file pages that exist from ``fpage``."""
    fits = z3.ULE(z3.ZeroExt(1, fpage) + z3.ZeroExt(1, count), 1 << Page.size())
    return z3.And(in_window(s, start, count), fits)


def map_range(s: State, g: z3.ExprRef, i: z3.ExprRef, fpage: z3.ExprRef,
              count: z3.ExprRef, writable: z3.BoolRef, start: z3.ExprRef,
              via_readable: z3.BoolRef, via_writable: z3.BoolRef) -> State:
    """Window pages [start, start+count) of guest ``g`` map ``i``'s pages from ``fpage``,
    unresolved; ``via_readable``/``via_writable`` record (ghosts) the access the grant
    came through."""
    x, sl = fresh(Guest, "x"), fresh(Slot, "sl")
    here = lambda: z3.And(x == g, slot_in(sl, start, count))  # noqa: E731
    put = lambda arr, v: z3.Lambda([x, sl], z3.If(here(), v, arr[x, sl]))  # noqa: E731
    return d.update(
        s,
        map_ino=put(s.map_ino, i),
        map_page=put(s.map_page, fpage + (sl - start)),
        map_wr=put(s.map_wr, writable),
        map_via_rd=put(s.map_via_rd, via_readable),
        map_via_wr=put(s.map_via_wr, via_writable),
        pte=put(s.pte, val(Frame, NONE)),
    )


def setupmapping(s: State, g: z3.ExprRef, h: z3.ExprRef, fpage: z3.ExprRef,
                 count: z3.ExprRef, writable: z3.BoolRef, start: z3.ExprRef,
                 *, check_mode: bool = True, check_read: bool = True) -> Step:
    """SETUPMAPPING: window pages [start, start+count) map file pages from ``fpage``.

    Entries are not resolved here: the first access resolves each to the frame the
    page cache holds at that moment. Any mapping needs a handle opened for reading, a
    writable one also for writing (ACCESS-MODE, EACCES as mmap(2)), and a writable
    export (RO-EXPORT). ``check_mode``/``check_read`` False are seeded bugs.
    """
    no_read = z3.Not(s.fh_rd[g, h]) if check_read else z3.BoolVal(False)
    no_write = z3.And(writable, z3.Not(s.fh_wr[g, h])) if check_mode else z3.BoolVal(False)
    err = checks(
        (z3.Not(handle_open(s, g, h)), E.EBADF),
        (z3.Not(mapping_fits(s, fpage, count, start)), E.EINVAL),
        (z3.And(writable, s.read_only), E.EROFS),
        (z3.Or(no_read, no_write), E.EACCES),
    )
    new = map_range(s, g, s.fh_ino[g, h], fpage, count, writable, start, s.fh_rd[g, h],
                    s.fh_wr[g, h])
    return session(s, g, step(s, new, err))


def removemapping(s: State, g: z3.ExprRef, start: z3.ExprRef, count: z3.ExprRef) -> Step:
    """REMOVEMAPPING: the window pages go back to free; the file may then be evicted."""
    err = checks((z3.Not(in_window(s, start, count)), E.EINVAL))
    x, sl = fresh(Guest, "x"), fresh(Slot, "sl")
    here = z3.And(x == g, slot_in(sl, start, count))
    new = d.update(
        s,
        map_ino=z3.Lambda([x, sl], z3.If(here, val(Inode, NONE), s.map_ino[x, sl])),
        pte=z3.Lambda([x, sl], z3.If(here, val(Frame, NONE), s.pte[x, sl])),
    )
    return session(s, g, step(s, new, err))


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
    return step(s, new, err, value=byte)


def store(s: State, g: z3.ExprRef, sl: z3.ExprRef, off: z3.ExprRef, b: z3.ExprRef,
          f: z3.ExprRef) -> Step:
    """STORE of one byte: faults on a free, read-only or wholly-beyond-EOF page; else it
    lands in the page cache's frame, seen at once by the host and every peer (COH-WRITE,
    COH-PEER). A byte past end of file in the last page stays in the page, not the file."""
    i, p = s.map_ino[g, sl], s.map_page[g, sl]
    err = checks((i == NONE, EFAULT), (z3.Not(s.map_wr[g, sl]), EFAULT),
                 (beyond_eof(s, i, p), EFAULT))
    resolved = s.pte[g, sl]
    frame, usable, s1 = frame_for(s, i, p, f)
    frame = z3.If(resolved != NONE, resolved, frame)
    s1 = d.ite(resolved != NONE, s, s1)
    s2 = put_byte(s1, frame, off, b)
    new = d.update(s2, pte=z3.Store(s2.pte, g, sl, frame))
    return step(s, new, err, z3.Or(err != 0, resolved != NONE, usable))


# ---------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Operation:
    """A transition with its argument names and sorts, so proofs can make them symbolic."""

    name: str
    fn: Callable[..., Step]
    args: tuple[tuple[str, z3.SortRef], ...]
    kind: str  # the spec's kind ("host", "request", "memory"), or "design": not a spec step

    def symbolic_args(self, tag: str = "") -> list[z3.ExprRef]:
        return [z3.Const(f"{a}{tag}", sort) for a, sort in self.args]

    def __call__(self, s: State, *args: z3.ExprRef) -> Step:
        return self.fn(s, *args)


_g, _h, _n, _i = ("g", Guest), ("h", Handle), ("n", Nodeid), ("i", Inode)
_nm, _f, _b, _sl = ("name", Name), ("frame", Frame), ("byte", Byte), ("slot", Slot)
_B = z3.BoolSort()
_pos, _rd, _wr, _tr = ("pos", Size), ("readable", _B), ("writable", _B), ("trunc", _B)

OPERATIONS: tuple[Operation, ...] = (
    Operation("host.write", host_write, (_i, _pos, _b, _f), "host"),
    Operation("host.truncate", host_truncate, (_i, ("size", Size)), "host"),
    Operation("host.create", host_create, (("dir", Inode), _nm), "host"),
    Operation("host.mkdir", host_mkdir, (("dir", Inode), _nm), "host"),
    Operation("host.unlink", host_unlink, (("dir", Inode), _nm), "host"),
    Operation("host.rmdir", host_rmdir, (("dir", Inode), _nm), "host"),
    Operation("host.rename", host_rename,
              (("dir", Inode), _nm, ("newdir", Inode), ("newname", Name)), "host"),
    Operation("collect", evict, (_i,), "design"),
    Operation("INIT", init, (_g,), "request"),
    Operation("DESTROY", destroy, (_g,), "request"),
    Operation("LOOKUP", lookup, (_g, ("parent", Nodeid), _nm), "request"),
    Operation("FORGET", forget, (_g, _n, ("nlookup", z3.IntSort())), "request"),
    Operation("OPEN", open_, (_g, _n, _rd, _wr, _tr), "request"),
    Operation("RELEASE", release, (_g, _h), "request"),
    Operation("READ", read, (_g, _h, _pos), "request"),
    Operation("WRITE", write, (_g, _h, _pos, _b, _f), "request"),
    Operation("SETATTR", setattr_size, (_g, _n, ("size", Size)), "request"),
    Operation("CREATE", create, (_g, ("parent", Nodeid), _nm, _rd, _wr, _tr,
                                 ("excl", _B)), "request"),
    Operation("MKDIR", mkdir, (_g, ("parent", Nodeid), _nm), "request"),
    Operation("UNLINK", unlink, (_g, ("parent", Nodeid), _nm), "request"),
    Operation("RMDIR", rmdir, (_g, ("parent", Nodeid), _nm), "request"),
    Operation("RENAME", rename, (_g, ("parent", Nodeid), _nm, ("newparent", Nodeid),
                                 ("newname", Name)), "request"),
    Operation("SETUPMAPPING", setupmapping,
              (_g, _h, ("fpage", Page), ("count", Slot), _wr, ("start", Slot)), "request"),
    Operation("REMOVEMAPPING", removemapping, (_g, ("start", Slot), ("count", Slot)),
              "request"),
    Operation("LOAD", load, (_g, _sl, ("offset", Offset)), "memory"),
    Operation("STORE", store, (_g, _sl, ("offset", Offset), _b, _f), "memory"),
)
BY_NAME = {op.name: op for op in OPERATIONS}
