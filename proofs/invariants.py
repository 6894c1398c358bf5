"""The design's invariants, one per named property, each a conjunction of clauses.

A clause is a quantifier-free ``body(state, *witnesses)`` over named bound variables;
the invariant is ``ForAll(witnesses, body)``. Keeping the bound variables named lets
a failed proof print *which* guest, window page, frame or inode breaks the property.
The proofs assume every invariant before a step and prove each one after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import z3

from pagefs.proofs.design import (
    NONE,
    ROOT,
    Frame,
    Guest,
    Handle,
    Inode,
    Name,
    Nodeid,
    Page,
    Slot,
    State,
    page_start,
)


@dataclass(frozen=True)
class Clause:
    """``ForAll(variables, body(state, *variables))`` with a sentence saying what it means."""

    says: str
    variables: tuple[tuple[str, z3.SortRef], ...]
    body: Callable[..., z3.BoolRef]

    def bound(self, tag: str) -> list[z3.ExprRef]:
        """Named constants for the variables, to read a counterexample's witnesses by."""
        return [z3.Const(f"{name}{tag}", sort) for name, sort in self.variables]

    def holds(self, s: State) -> z3.BoolRef:
        if not self.variables:
            return self.body(s)
        xs = [z3.FreshConst(sort, name) for name, sort in self.variables]
        return z3.ForAll(xs, self.body(s, *xs))


@dataclass(frozen=True)
class Invariant:
    name: str  # the spec's named property this invariant carries
    clauses: tuple[Clause, ...]

    def holds(self, s: State) -> z3.BoolRef:
        return z3.And([c.holds(s) for c in self.clauses])


G, SL, H, N, INO, P, F, NM = (("g", Guest), ("sl", Slot), ("h", Handle), ("n", Nodeid),
                              ("i", Inode), ("p", Page), ("f", Frame), ("nm", Name))


def _resolved_entry(s: State, g: z3.ExprRef, sl: z3.ExprRef) -> z3.BoolRef:
    e, i, p = s.pte[g, sl], s.map_ino[g, sl], s.map_page[g, sl]
    return z3.Implies(e != NONE, z3.And(i != NONE, s.owner[e] == i, s.fpage[e] == p,
                                        s.pc[i, p] == e))


ISOLATION = Invariant("ISOLATION", (
    Clause("every resolved window entry is the page cache's current frame for the "
           "(inode, page) the mapping names, owned by that inode (so never a freed frame)",
           (G, SL), _resolved_entry),
))

SINGLE_COPY = Invariant("SINGLE-COPY", (
    Clause("frame 0 means 'no frame' and is never owned",
           (), lambda s: s.owner[0] == NONE),
    Clause("the page cache holds at most one frame per (inode, page), and that frame "
           "records it as its owner and page",
           (INO, P), lambda s, i, p: z3.Implies(s.pc[i, p] != NONE, z3.And(
               s.owner[s.pc[i, p]] == i, s.fpage[s.pc[i, p]] == p))),
    Clause("every frame in use is the page cache's frame for its (owner, page): there are "
           "no guest-private copies",
           (F,), lambda s, f: z3.Implies(s.owner[f] != NONE,
                                         s.pc[s.owner[f], s.fpage[f]] == f)),
))

EOF_FAULT = Invariant("EOF-FAULT", (
    Clause("no frame is cached for a page wholly beyond end of file (truncate dropped it)",
           (INO, P), lambda s, i, p: z3.Implies(s.pc[i, p] != NONE,
                                              z3.ULT(page_start(p), s.size[i]))),
))

RO_EXPORT = Invariant("RO-EXPORT", (
    Clause("in a read-only export no handle is open for writing",
           (G, H), lambda s, g, h: z3.Implies(z3.And(s.read_only, s.fh_ino[g, h] != NONE),
                                              z3.Not(s.fh_wr[g, h]))),
    Clause("in a read-only export no window page is mapped writable",
           (G, SL), lambda s, g, sl: z3.Implies(z3.And(s.read_only, s.map_ino[g, sl] != NONE),
                                                z3.Not(s.map_wr[g, sl]))),
))

ACCESS_MODE = Invariant("ACCESS-MODE", (
    Clause("a handle is opened for reading, writing or both",
           (G, H), lambda s, g, h: z3.Implies(s.fh_ino[g, h] != NONE,
                                              z3.Or(s.fh_rd[g, h], s.fh_wr[g, h]))),
    Clause("a mapping was made through a handle opened for reading",
           (G, SL), lambda s, g, sl: z3.Implies(s.map_ino[g, sl] != NONE, s.map_via_rd[g, sl])),
    Clause("a writable mapping was made through a handle opened for writing",
           (G, SL), lambda s, g, sl: z3.Implies(z3.And(s.map_ino[g, sl] != NONE, s.map_wr[g, sl]),
                                                s.map_via_wr[g, sl])),
))

SIZE_LIMIT = Invariant("SIZE-LIMIT", (
    Clause("no file is larger than the export's largest size (EFBIG refuses the rest)",
           (INO,), lambda s, i: z3.ULE(s.size[i], s.max_size)),
))

HANDLE = Invariant("HANDLE", (
    Clause("a guest's next handle is never 0", (G,), lambda s, g: s.next_fh[g] != 0),
    Clause("handles at or past the guest's next handle were never issued",
           (G, H), lambda s, g, h: z3.Implies(z3.UGE(h, s.next_fh[g]), z3.And(
               z3.Not(s.fh_issued[g, h]), s.fh_ino[g, h] == NONE))),
    Clause("handle 0 is never issued", (G,), lambda s, g: z3.Not(s.fh_issued[g, 0])),
    Clause("an open handle was issued and not released; a released handle stays released",
           (G, H), lambda s, g, h: z3.And(
               z3.Implies(s.fh_ino[g, h] != NONE,
                          z3.And(s.fh_issued[g, h], z3.Not(s.fh_released[g, h]))),
               z3.Implies(s.fh_released[g, h], s.fh_issued[g, h]))),
))

NODEID = Invariant("NODEID", (
    Clause("every guest holds the root nodeid for the root, and its next nodeid is past it",
           (G,), lambda s, g: z3.And(s.node_ino[g, ROOT] == ROOT, z3.UGT(s.next_node[g], ROOT))),
    Clause("nodeid 0 and inode 0 are never bound",
           (G,), lambda s, g: z3.And(s.node_ino[g, 0] == NONE, s.ino_node[g, 0] == NONE,
                                     s.node_hist[g, 0] == NONE)),
    Clause("nodeids at or past the guest's next nodeid were never bound",
           (G, N), lambda s, g, n: z3.Implies(z3.UGE(n, s.next_node[g]), z3.And(
               s.node_ino[g, n] == NONE, s.node_hist[g, n] == NONE))),
    Clause("a bound nodeid means the inode it first meant",
           (G, N), lambda s, g, n: z3.Implies(s.node_ino[g, n] != NONE,
                                              s.node_ino[g, n] == s.node_hist[g, n])),
    Clause("the inverse map agrees with a bound nodeid",
           (G, N), lambda s, g, n: z3.Implies(s.node_ino[g, n] != NONE,
                                              s.ino_node[g, s.node_ino[g, n]] == n)),
    Clause("a bound nodeid has a positive lookup count",
           (G, N), lambda s, g, n: z3.Implies(s.node_ino[g, n] != NONE, s.node_cnt[g, n] > 0)),
    Clause("a bound nodeid names an issued inode identity",
           (G, N), lambda s, g, n: z3.Implies(s.node_ino[g, n] != NONE,
                                              z3.ULT(s.node_ino[g, n], s.next_ino))),
    Clause("a bound nodeid keeps its inode alive (so it never needs to mean another)",
           (G, N), lambda s, g, n: z3.Implies(s.node_ino[g, n] != NONE,
                                              s.alive[s.node_ino[g, n]])),
    Clause("the inverse map names only bound nodeids",
           (G, INO), lambda s, g, i: z3.Implies(s.ino_node[g, i] != NONE,
                                              s.node_ino[g, s.ino_node[g, i]] == i)),
))


def _regular(s: State, i: z3.ExprRef) -> z3.BoolRef:
    return z3.And(s.alive[i], z3.Not(s.is_dir[i]))


LIFETIME = Invariant("LIFETIME", (
    Clause("the root lives and is a directory; inode 0 never lives; identities past "
           "next_ino were never issued",
           (INO,), lambda s, i: z3.And(
               s.alive[ROOT], s.is_dir[ROOT], z3.UGT(s.next_ino, ROOT), z3.Not(s.alive[0]),
               z3.Implies(z3.UGE(i, s.next_ino), z3.Not(s.alive[i])))),
    Clause("a name lives in a live directory and names a live, issued inode",
           (INO, NM), lambda s, i, nm: z3.Implies(s.dent[i, nm] != NONE, z3.And(
               s.alive[i], s.is_dir[i], s.alive[s.dent[i, nm]], nm != 0,
               s.dent[i, nm] != ROOT))),
    Clause("an open handle keeps its regular file alive",
           (G, H), lambda s, g, h: z3.Implies(s.fh_ino[g, h] != NONE,
                                              _regular(s, s.fh_ino[g, h]))),
    Clause("a mapping keeps its regular file alive",
           (G, SL), lambda s, g, sl: z3.Implies(s.map_ino[g, sl] != NONE,
                                                _regular(s, s.map_ino[g, sl]))),
    Clause("only live regular files have cached pages and frames",
           (INO, P), lambda s, i, p: z3.Implies(s.pc[i, p] != NONE, _regular(s, i))),
    Clause("a frame's owner is alive",
           (F,), lambda s, f: z3.Implies(s.owner[f] != NONE, s.alive[s.owner[f]])),
))

RECLAIM = Invariant("RECLAIM", (
    Clause("a disconnected guest holds no handle",
           (G, H), lambda s, g, h: z3.Implies(z3.Not(s.conn[g]), s.fh_ino[g, h] == NONE)),
    Clause("a disconnected guest holds no mapping or resolved entry",
           (G, SL), lambda s, g, sl: z3.Implies(z3.Not(s.conn[g]), z3.And(
               s.map_ino[g, sl] == NONE, s.pte[g, sl] == NONE))),
    Clause("a disconnected guest holds no nodeid but the root",
           (G, N), lambda s, g, n: z3.Implies(z3.And(z3.Not(s.conn[g]), n != ROOT),
                                              s.node_ino[g, n] == NONE)),
))

ALL: tuple[Invariant, ...] = (ISOLATION, SINGLE_COPY, EOF_FAULT, RO_EXPORT, ACCESS_MODE,
                              SIZE_LIMIT, HANDLE, NODEID, LIFETIME, RECLAIM)
BY_NAME = {inv.name: inv for inv in ALL}


def all_hold(s: State) -> z3.BoolRef:
    return z3.And([inv.holds(s) for inv in ALL])
