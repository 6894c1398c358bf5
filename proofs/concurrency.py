"""A truncate split into its real sub-steps, against a guest access in flight.

Every other check takes a truncate as one atomic step. In a host it is not: Linux sets
the new size, then zaps the mappings beyond it (``unmap_mapping_range``, which also
bumps KVM's invalidation sequence through the MMU notifier), then frees the pages
(``truncate_inode_pages``). Meanwhile a guest's access to its DAX window may be in
flight: its fault looked up a frame and has not yet installed the entry (KVM's
``mmu_invalidate_seq`` check: an entry is installed only if no invalidation ran since
the lookup; otherwise the fault is retried).

Model: the truncate is three sub-steps ``size``, ``zap``, ``free`` (``transitions``'
``resized``, ``zapped``, ``dropped``); a LOAD of one byte is two, ``lookup`` (the fault
check against the size it sees, the frame its entry or the page cache gives, and the
invalidation sequence) and ``commit`` (if the sequence is unchanged: install the entry
and read the byte; else retry, which re-runs the whole access after the truncate). For
every interleaving of the two (ten), from *any* state in which every invariant holds,
with every argument symbolic, z3 proves:

- ISOLATION: the byte is read from a frame the page cache holds for the mapping's own
  (inode, page) at the moment of the read (never a freed or reused frame), and the
  invariants about frames and entries (ISOLATION, SINGLE-COPY, EOF-FAULT) hold again
  when both are done, given that they held before;
- EOF-FAULT: after the truncate no entry reaches a page wholly beyond the new end, so a
  retried or later access faults there; an access whose lookup saw the new size faults;
- the memory model (``pagefs.spec.memory``): the byte returned is the byte before the
  truncate or the byte after it (none where the page is gone).

Seeded bugs, each of which z3 must refute: ``free-before-zap`` (the sub-steps in the
wrong order) and ``commit-without-seq`` (an entry installed without asking whether an
invalidation ran since the lookup).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import z3

from pagefs.proofs import design as d
from pagefs.proofs import inductive, invariants
from pagefs.proofs import transitions as t
from pagefs.proofs.design import NONE, Byte, Guest, Inode, Offset, Size, Slot, State
from pagefs.proofs.table import Row

SubStep = Callable[[State, z3.ExprRef, z3.ExprRef], State]

CONCERNED = (invariants.ISOLATION, invariants.SINGLE_COPY, invariants.EOF_FAULT)
"""The invariants about frames, entries and sizes: the only state the sub-steps and the
access touch. (The other invariants speak of handles, names and nodeids, which neither
changes; the atomic truncate's proofs cover them.)"""

TRUNCATE: tuple[tuple[str, SubStep], ...] = (
    ("size", t.resized), ("zap", t.zapped), ("free", t.dropped))
FREE_BEFORE_ZAP = (TRUNCATE[0], TRUNCATE[2], TRUNCATE[1])


@dataclass(frozen=True)
class Model:
    """The sub-step order of the truncate, and whether a commit checks the sequence."""

    name: str
    truncate: tuple[tuple[str, SubStep], ...] = TRUNCATE
    check_seq: bool = True


CORRECT = Model("the design")
SEEDED = (Model("free-before-zap", truncate=FREE_BEFORE_ZAP),
          Model("commit-without-seq", check_seq=False))


def interleavings(host: int = 3, guest: int = 2) -> list[tuple[str, ...]]:
    """Every order of ``host`` truncate sub-steps and ``guest`` access sub-steps, each
    side in its own program order: "h" and "g" marks."""
    orders = []
    for where in itertools.combinations(range(host + guest), guest):
        orders.append(tuple("g" if k in where else "h" for k in range(host + guest)))
    return orders


@dataclass
class Verdict:
    model: str
    order: str
    verdict: str  # "proved", "refuted", "unknown"
    seconds: float
    witness: str = ""


def check(model: Model, order: tuple[str, ...], timeout_ms: int = 60_000) -> Verdict:
    """One interleaving: can anything go wrong, from any state where the invariants hold?"""
    start = time.monotonic()
    s0 = d.symbolic("pre")
    i, new_size = z3.Const("i", Inode), z3.Const("size", Size)
    g, sl, off = z3.Const("g", Guest), z3.Const("slot", Slot), z3.Const("offset", Offset)
    truncating = t.host_truncate(s0, i, new_size)
    assumptions = [*(inv.holds(s0) for inv in CONCERNED), truncating.ok]
    s, seq = s0, 0  # the invalidation sequence only needs to count zaps
    host_steps = iter(model.truncate)
    seen: dict[str, z3.ExprRef] = {}
    bad: list[z3.BoolRef] = []
    labels: list[str] = []
    for who in order:
        if who == "h":
            label, sub = next(host_steps)
            s = sub(s, i, new_size)
            seq += label == "zap"
            labels.append(label)
            continue
        if "frame" not in seen:  # lookup
            labels.append("lookup")
            mi, mp = s.map_ino[g, sl], s.map_page[g, sl]
            seen.update(ino=mi, page=mp, seq=z3.IntVal(seq),
                        fault=z3.Or(mi == NONE, t.beyond_eof(s, mi, mp)),
                        frame=z3.If(s.pte[g, sl] != NONE, s.pte[g, sl], s.pc[mi, mp]))
            continue
        labels.append("commit")  # commit
        mi, mp, frame = seen["ino"], seen["page"], seen["frame"]
        current = z3.IntVal(seq) == seen["seq"] if model.check_seq else z3.BoolVal(True)
        reads = z3.And(z3.Not(seen["fault"]), current)
        byte = z3.If(frame == NONE, d.val(Byte, 0), s.fdata[frame, off])
        # ISOLATION at the read: the frame is the page cache's own for (inode, page).
        bad.append(z3.And(reads, frame != NONE,
                          z3.Or(s.owner[frame] != mi, s.pc[mi, mp] != frame)))
        installed = d.update(s, pte=z3.Store(s.pte, g, sl, frame))
        s = d.ite(reads, installed, s)
        seen.update(reads=reads, byte=byte)
    end = s
    # The memory model: the byte is the one before the truncate, or the one after it.
    pos = d.position(seen["page"], off)
    before = t.read_byte(s0, seen["ino"], pos)
    after = t.read_byte(end, seen["ino"], pos)
    bad.append(z3.And(seen["reads"], seen["byte"] != before, seen["byte"] != after))
    # The invariants the sub-steps touch hold again once both are done (negated at named
    # witnesses, as the inductive proofs do).
    bad += [inductive.violation(inv, end)[0] for inv in CONCERNED]
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*assumptions, z3.Or(bad))
    result = solver.check()
    witness = ""
    if result == z3.sat:
        m = solver.model()
        ev = lambda term: m.eval(term, model_completion=True)  # noqa: E731
        witness = (f"guest {ev(g)} window page {ev(sl)} maps inode {ev(seen['ino'])} page "
                   f"{ev(seen['page'])}, truncated to {ev(new_size)} bytes; the access "
                   f"looked up frame {ev(seen['frame'])}")
    verdict = "proved" if result == z3.unsat else "refuted" if result == z3.sat else "unknown"
    return Verdict(model.name, " ".join(labels), verdict, time.monotonic() - start, witness)


def rows(quick: bool = True) -> Iterator[Row]:
    """One row for the design (every interleaving proved), one per seeded bug (some
    interleaving refuted)."""
    orders = interleavings()
    start = time.monotonic()
    results = [check(CORRECT, order) for order in orders]
    failed = [r for r in results if r.verdict != "proved"]
    detail = (f"all {len(orders)} interleavings of truncate (size, zap, free) with a LOAD "
              f"(lookup, commit) proved from any state satisfying every invariant")
    if failed:
        detail = f"{failed[0].order}: {failed[0].verdict} {failed[0].witness}"
    yield Row("ISOLATION, EOF-FAULT", "host.truncate ∥ LOAD", "z3 interleavings",
              "proved" if not failed else failed[0].verdict, not failed,
              time.monotonic() - start, detail)
    for model in SEEDED:
        start = time.monotonic()
        found = next((r for r in (check(model, o) for o in orders) if r.verdict == "refuted"),
                     None)
        yield Row("ISOLATION, EOF-FAULT", f"seeded bug: {model.name}", "z3 interleavings",
                  "refuted" if found else "not refuted", found is not None,
                  time.monotonic() - start,
                  f"{found.order}: {found.witness}" if found else "every interleaving holds")
