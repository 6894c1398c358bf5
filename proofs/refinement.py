"""Refinement: reading through the design gives the abstract spec's bytes.

The abstraction maps a design state to the spec's view of file data: the byte at
position q of inode i is what the page cache holds there (zero where no frame is
cached), including the stored tail of the last page, which the spec keeps as
``Inode.tail``. Sizes map one to one. Two kinds of theorem, all assuming every
invariant before the step:

* Data refinement, one per operation: the abstract bytes and sizes after a design step
  are what the spec's rule makes of those before it (host.write and WRITE put a byte
  and, past the end, clear the old tail; truncation keeps bytes below the smaller size
  and zeroes the rest when the size changes; STORE puts a byte in the page; every other
  operation leaves the data of every live file alone).
* The named coherence properties, stated on the design directly: COH-READ (a LOAD or
  READ returns the abstract byte, never a stale frame), COH-WRITE (after a STORE or
  WRITE the host reads the new byte), COH-PEER (after one guest's STORE another guest's
  LOAD of the same file page returns it), EOF-FAULT (LOAD and STORE fault exactly on a
  free, read-only-for-stores or wholly-beyond-EOF page, and a fault changes nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import z3

from pagefs.proofs import design as d
from pagefs.proofs import transitions as t
from pagefs.proofs.design import NONE, Byte, Inode, Offset, Size, Slot, State, position
from pagefs.proofs.inductive import check
from pagefs.proofs.invariants import all_hold
from pagefs.proofs.transitions import Operation

TIMEOUT_MS = 60_000


def abstract(s: State, i: z3.ExprRef, q: z3.ExprRef) -> z3.ExprRef:
    """The spec's byte at position ``q`` of inode ``i`` (data below the size, tail above)."""
    return t.read_byte(s, i, q)


Effect = Callable[[State, list[z3.ExprRef], z3.ExprRef, z3.ExprRef],
                  tuple[z3.ExprRef, z3.ExprRef]]  # (pre, args, i, q) -> (byte, size) after


def _unchanged(s: State, args: list[z3.ExprRef], i: z3.ExprRef, q: z3.ExprRef
               ) -> tuple[z3.ExprRef, z3.ExprRef]:
    return abstract(s, i, q), s.size[i]


def _spec_write(s: State, target: z3.ExprRef, pos: z3.ExprRef, b: z3.ExprRef,
                i: z3.ExprRef, q: z3.ExprRef) -> tuple[z3.ExprRef, z3.ExprRef]:
    """spec ``with_data(write_bytes(...))``: the byte lands; growing clears the old tail."""
    old = s.size[target]
    mine = i == target
    grows = z3.UGE(pos, old)
    byte = z3.If(z3.And(mine, q == pos), b,
                 z3.If(z3.And(mine, grows, z3.UGE(q, old)), d.val(Byte, 0), abstract(s, i, q)))
    size = z3.If(z3.And(mine, grows), pos + 1, s.size[i])
    return byte, size


def _spec_resize(s: State, target: z3.ExprRef, new: z3.ExprRef, i: z3.ExprRef,
                 q: z3.ExprRef) -> tuple[z3.ExprRef, z3.ExprRef]:
    """spec ``with_data(resize(...))``: bytes below the smaller size stay; when the size
    changes everything above it reads as zero (the tail is cleared)."""
    old = s.size[target]
    low = z3.If(z3.ULT(new, old), new, old)
    cleared = z3.And(i == target, new != old, z3.UGE(q, low))
    return (z3.If(cleared, d.val(Byte, 0), abstract(s, i, q)),
            z3.If(i == target, new, s.size[i]))


def _host_write(s: State, a: list[z3.ExprRef], i: z3.ExprRef, q: z3.ExprRef
                ) -> tuple[z3.ExprRef, z3.ExprRef]:
    return _spec_write(s, a[0], a[1], a[2], i, q)


def _write(s: State, a: list[z3.ExprRef], i: z3.ExprRef, q: z3.ExprRef
           ) -> tuple[z3.ExprRef, z3.ExprRef]:
    return _spec_write(s, s.fh_ino[a[0], a[1]], a[2], a[3], i, q)


def _host_truncate(s: State, a: list[z3.ExprRef], i: z3.ExprRef, q: z3.ExprRef
                   ) -> tuple[z3.ExprRef, z3.ExprRef]:
    return _spec_resize(s, a[0], a[1], i, q)


def _setattr(s: State, a: list[z3.ExprRef], i: z3.ExprRef, q: z3.ExprRef
             ) -> tuple[z3.ExprRef, z3.ExprRef]:
    return _spec_resize(s, s.node_ino[a[0], a[1]], a[2], i, q)


def _open(s: State, a: list[z3.ExprRef], i: z3.ExprRef, q: z3.ExprRef
          ) -> tuple[z3.ExprRef, z3.ExprRef]:
    target = s.node_ino[a[0], a[1]]
    byte, size = _spec_resize(s, target, d.val(Size, 0), i, q)
    trunc = a[4]
    return z3.If(trunc, byte, abstract(s, i, q)), z3.If(trunc, size, s.size[i])


def _create(s: State, a: list[z3.ExprRef], i: z3.ExprRef, q: z3.ExprRef
            ) -> tuple[z3.ExprRef, z3.ExprRef]:
    target = s.dent[s.node_ino[a[0], a[1]], a[2]]
    byte, size = _spec_resize(s, target, d.val(Size, 0), i, q)
    trunc = z3.And(a[5], target != NONE)
    return z3.If(trunc, byte, abstract(s, i, q)), z3.If(trunc, size, s.size[i])


def _store(s: State, a: list[z3.ExprRef], i: z3.ExprRef, q: z3.ExprRef
           ) -> tuple[z3.ExprRef, z3.ExprRef]:
    g, sl, off, b = a[0], a[1], a[2], a[3]
    target, page = s.map_ino[g, sl], s.map_page[g, sl]
    hit = z3.And(i == target, q == position(page, off))
    return z3.If(hit, b, abstract(s, i, q)), s.size[i]


EFFECTS: dict[str, Effect] = {
    "host.write": _host_write,
    "WRITE": _write,
    "host.truncate": _host_truncate,
    "SETATTR": _setattr,
    "OPEN": _open,
    "CREATE": _create,
    "STORE": _store,
}


@dataclass
class Result:
    property: str
    operation: str
    verdict: str  # "proved", "counterexample", "unknown"
    seconds: float


def _prove(prop: str, op_name: str, goal_fails: z3.BoolRef, timeout_ms: int) -> Result:
    start = time.monotonic()
    result, _ = check(goal_fails, timeout_ms)
    verdict = ("proved" if result == z3.unsat
               else "counterexample" if result == z3.sat else "unknown")
    return Result(prop, op_name, verdict, time.monotonic() - start)


def data_refinement(op: Operation, timeout_ms: int = TIMEOUT_MS) -> Result:
    """After ``op``, every live inode's abstract bytes and size are the spec rule's."""
    s = d.symbolic("s")
    args = op.symbolic_args()
    st = op(s, *args)
    i, q = z3.Const("i!r", Inode), z3.Const("q!r", Size)
    effect = EFFECTS.get(op.name, _unchanged)
    byte, size = effect(s, args, i, q)
    born = z3.Not(s.alive[i])  # a new inode: the spec's is empty
    byte = z3.If(born, d.val(Byte, 0), byte)
    size = z3.If(born, d.val(Size, 0), size)
    changed = z3.If(st.ok, z3.Or(abstract(st.post, i, q) != byte, st.post.size[i] != size),
                    z3.Or(abstract(st.post, i, q) != abstract(s, i, q),
                          st.post.size[i] != s.size[i]))
    bad = z3.And(all_hold(s), st.enabled, st.post.alive[i], changed)
    return _prove("refinement", op.name, bad, timeout_ms)


def _memory_args(tag: str) -> tuple[z3.ExprRef, z3.ExprRef, z3.ExprRef]:
    return (z3.Const(f"g{tag}", d.Guest), z3.Const(f"slot{tag}", Slot),
            z3.Const(f"offset{tag}", Offset))


def coh_read_load(timeout_ms: int = TIMEOUT_MS) -> Result:
    """COH-READ: a LOAD that does not fault returns the abstract byte of the mapped file,
    and changes no file's bytes."""
    s = d.symbolic("s")
    g, sl, off = _memory_args("")
    st = t.load(s, g, sl, off)
    i, p = s.map_ino[g, sl], s.map_page[g, sl]
    j, q = z3.Const("i!r", Inode), z3.Const("q!r", Size)
    wrong = z3.Or(z3.And(st.ok, st.value != abstract(s, i, position(p, off))),
                  abstract(st.post, j, q) != abstract(s, j, q))
    return _prove("COH-READ", "LOAD", z3.And(all_hold(s), st.enabled, wrong), timeout_ms)


def coh_read_read(timeout_ms: int = TIMEOUT_MS) -> Result:
    """COH-READ: READ returns the abstract byte below end of file, and none past it."""
    s = d.symbolic("s")
    op = t.BY_NAME["READ"]
    g, h, pos = op.symbolic_args()
    st = t.read(s, g, h, pos)
    i = s.fh_ino[g, h]
    expected = z3.If(z3.ULT(pos, s.size[i]), z3.ZeroExt(1, abstract(s, i, pos)), t.NO_BYTE)
    return _prove("COH-READ", "READ", z3.And(all_hold(s), st.ok, st.value != expected),
                  timeout_ms)


def coh_write(op_name: str, timeout_ms: int = TIMEOUT_MS) -> Result:
    """COH-WRITE: right after a STORE or WRITE succeeds, the host reads the new byte."""
    s = d.symbolic("s")
    op = t.BY_NAME[op_name]
    args = op.symbolic_args()
    st = op(s, *args)
    if op_name == "STORE":
        g, sl, off, b, _ = args
        i, pos = s.map_ino[g, sl], position(s.map_page[g, sl], off)
    else:
        g, h, pos, b, _ = args
        i = s.fh_ino[g, h]
    bad = z3.And(all_hold(s), st.enabled, st.ok, t.read_byte(st.post, i, pos) != b)
    return _prove("COH-WRITE", op_name, bad, timeout_ms)


def coh_peer(timeout_ms: int = TIMEOUT_MS) -> Result:
    """COH-PEER: after guest g1 stores byte b at a window page mapping (i, p), a LOAD by
    any guest g2 at a window page mapping the same (i, p), same offset, returns b."""
    s = d.symbolic("s")
    g1, sl1, off = _memory_args("1")
    b, f = z3.Const("byte", Byte), z3.Const("frame", d.Frame)
    g2, sl2, _ = _memory_args("2")
    stored = t.store(s, g1, sl1, off, b, f)
    loaded = t.load(stored.post, g2, sl2, off)
    same = z3.And(s.map_ino[g2, sl2] == s.map_ino[g1, sl1],
                  s.map_page[g2, sl2] == s.map_page[g1, sl1])
    bad = z3.And(all_hold(s), stored.enabled, stored.ok, same, loaded.value != b)
    return _prove("COH-PEER", "STORE then LOAD", bad, timeout_ms)


def eof_fault(op_name: str, timeout_ms: int = TIMEOUT_MS) -> Result:
    """EOF-FAULT: LOAD and STORE fault exactly when the window page is free, wholly beyond
    end of file, or (for STORE) read-only; a faulting access changes nothing at all."""
    s = d.symbolic("s")
    op = t.BY_NAME[op_name]
    args = op.symbolic_args()
    st = op(s, *args)
    g, sl = args[0], args[1]
    i, p = s.map_ino[g, sl], s.map_page[g, sl]
    faults = z3.Or(i == NONE, t.beyond_eof(s, i, p))
    if op_name == "STORE":
        faults = z3.Or(faults, z3.Not(s.map_wr[g, sl]))
    says_fault = st.err == t.EFAULT
    untouched = z3.And([getattr(st.post, name) == getattr(s, name)
                        for name in d.field_names()])
    bad = z3.And(all_hold(s), st.enabled, z3.Or(says_fault != faults,
                                                z3.And(says_fault, z3.Not(untouched))))
    return _prove("EOF-FAULT", op_name, bad, timeout_ms)


def named(timeout_ms: int = TIMEOUT_MS) -> list[Callable[[], Result]]:
    """The coherence theorems, as thunks for the driver to time one by one."""
    return [
        lambda: coh_read_load(timeout_ms),
        lambda: coh_read_read(timeout_ms),
        lambda: coh_write("STORE", timeout_ms),
        lambda: coh_write("WRITE", timeout_ms),
        lambda: coh_peer(timeout_ms),
        lambda: eof_fault("LOAD", timeout_ms),
        lambda: eof_fault("STORE", timeout_ms),
    ]



def no_write_path(op: Operation, timeout_ms: int = TIMEOUT_MS) -> Result:
    """RO-EXPORT as a step property: in a read-only export no guest request or access
    changes any file's bytes or size, or any directory entry; the host still can."""
    s = d.symbolic("s")
    args = op.symbolic_args()
    st = op(s, *args)
    i, q = z3.Const("i!r", Inode), z3.Const("q!r", Size)
    dir_i, name = z3.Const("dir!r", Inode), z3.Const("name!r", d.Name)
    changed = z3.Or(abstract(st.post, i, q) != abstract(s, i, q), st.post.size[i] != s.size[i],
                    st.post.dent[dir_i, name] != s.dent[dir_i, name])
    bad = z3.And(all_hold(s), s.read_only, st.enabled, s.alive[i], changed)
    return _prove("RO-EXPORT", op.name, bad, timeout_ms)
