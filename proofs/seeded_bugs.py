"""Seeded bugs: for every invariant, a broken variant of the design that z3 must refute.

A proof that cannot fail proves nothing. Each variant replaces one or more transitions
with a plausible implementation mistake; the inductive check of the replaced
transitions against the invariant the mistake breaks must come back with a
counterexample (printed by ``explain``). ``make verify`` fails if any variant is not
refuted.
"""

from __future__ import annotations

import errno as E
from collections.abc import Callable
from dataclasses import dataclass

import z3

from pagefs.proofs import bmc, inductive
from pagefs.proofs import design as d
from pagefs.proofs import transitions as t
from pagefs.proofs.design import NONE, Frame, Handle, Nodeid, State
from pagefs.proofs.explain import describe
from pagefs.proofs.invariants import BY_NAME as BY_INVARIANT
from pagefs.proofs.transitions import Operation, Step


@dataclass(frozen=True)
class Variant:
    name: str
    breaks: str  # the invariant (named property) it must violate
    says: str  # the mistake, in words
    replaces: tuple[Operation, ...]  # buggy operations, each named as the one it replaces
    schedule: tuple[str, ...]  # operations of a run from the initial state that may expose it

    def operations(self) -> list[Operation]:
        """The schedule with the buggy operations in place of the spec's."""
        buggy = {op.name: op for op in self.replaces}
        return [buggy.get(name, t.BY_NAME[name]) for name in self.schedule]


def _like(name: str, fn: Callable[..., Step],
          extra: tuple[tuple[str, z3.SortRef], ...] = ()) -> Operation:
    """A buggy operation standing in for the spec operation ``name``."""
    op = t.BY_NAME[name]
    return Operation(name, fn, op.args + extra, op.kind)


def _copying_load(s: State, g: z3.ExprRef, sl: z3.ExprRef, off: z3.ExprRef,
                  f: z3.ExprRef) -> Step:
    """LOAD that faults a page in by copying it into a guest-private frame ``f``."""
    i, p = s.map_ino[g, sl], s.map_page[g, sl]
    err = t.checks((i == NONE, t.EFAULT), (t.beyond_eof(s, i, p), t.EFAULT))
    cached = s.pc[i, p]
    copy = z3.And(s.pte[g, sl] == NONE, cached != NONE)
    fx, ox = t.fresh(Frame, "fx"), t.fresh(d.Offset, "ox")
    copied = d.update(
        s,
        owner=z3.Store(s.owner, f, i),
        fpage=z3.Store(s.fpage, f, p),
        fdata=z3.Lambda([fx, ox], z3.If(fx == f, s.fdata[cached, ox], s.fdata[fx, ox])),
        pte=z3.Store(s.pte, g, sl, f),
    )
    base = t.load(s, g, sl, off)
    new = d.ite(copy, copied, base.post)
    return t.step(s, new, err, z3.Or(z3.Not(copy), z3.And(f != NONE, s.owner[f] == NONE)),
                  base.value)


def _map_by_nodeid(s: State, g: z3.ExprRef, n: z3.ExprRef, fpage: z3.ExprRef,
                   count: z3.ExprRef, writable: z3.BoolRef, start: z3.ExprRef,
                   *, check_export: bool = False) -> Step:
    """SETUPMAPPING by nodeid, as a Linux guest sends it (fh = FUSE_SETUPMAPPING_NO_FH):
    the daemon maps the inode through a descriptor of its own, opened in the mode asked
    for, so the access mode holds, but it never asks whether the export is read-only
    (``check_export`` puts that check back, to show it is the one the bug leaves out)."""
    i = t.node(s, g, n)
    refused = s.read_only if check_export else z3.BoolVal(False)
    err = t.checks(t.stale(s, g, n),
                   (z3.Not(t.mapping_fits(s, fpage, count, start)), E.EINVAL),
                   (s.is_dir[i], E.ENODEV),
                   (z3.And(writable, refused), E.EROFS))
    new = t.map_range(s, g, i, fpage, count, writable, start, via_readable=z3.BoolVal(True),
                      via_writable=writable)
    return t.session(s, g, t.step(s, new, err))


def by_nodeid(check_export: bool = False) -> Operation:
    """The by-nodeid SETUPMAPPING as an operation standing in for SETUPMAPPING."""
    args = tuple(("n", Nodeid) if name == "h" else (name, sort)
                 for name, sort in t.BY_NAME["SETUPMAPPING"].args)
    return Operation("SETUPMAPPING",
                     lambda s, *a: _map_by_nodeid(s, *a, check_export=check_export),
                     args, "request")


_FH = (("reused", Handle),)
_NODE = (("reused", Nodeid),)

VARIANTS: tuple[Variant, ...] = (
    Variant("truncate-without-zap", "ISOLATION",
            "truncate frees the frames beyond the new end without zapping window entries",
            (_like("host.truncate", lambda s, i, n: t.host_truncate(s, i, n, zap=False)),),
            ("CREATE", "WRITE", "SETUPMAPPING", "LOAD", "host.truncate")),
    Variant("free-while-mapped", "ISOLATION",
            "a file's frames are freed (and may be reused) while a guest still maps it",
            (_like("collect", lambda s, i: t.evict(s, i, ignore=("mappings",))),),
            ("CREATE", "WRITE", "SETUPMAPPING", "LOAD", "RELEASE", "FORGET", "UNLINK", "collect")),
    Variant("private-copy", "SINGLE-COPY",
            "a guest's first access copies the page into a guest-private frame",
            (_like("LOAD", _copying_load, (("frame", Frame),)),),
            ("CREATE", "WRITE", "SETUPMAPPING", "LOAD")),
    Variant("truncate-keeps-pages", "EOF-FAULT",
            "truncate keeps the cached pages beyond the new end of file",
            (_like("host.truncate", lambda s, i, n: t.host_truncate(s, i, n, drop=False)),),
            ("host.create", "host.write", "host.truncate")),
    Variant("writable-open-read-only-export", "RO-EXPORT",
            "OPEN grants write access in a read-only export",
            (_like("OPEN", lambda s, g, n, r, w, tr: t.open_(s, g, n, r, w, tr,
                                                           read_only=False)),),
            ("host.create", "LOOKUP", "OPEN")),
    Variant("writable-map-read-only-handle", "ACCESS-MODE",
            "SETUPMAPPING grants a writable mapping through a read-only handle",
            (_like("SETUPMAPPING", lambda s, g, h, fp, c, w, st: t.setupmapping(
                s, g, h, fp, c, w, st, check_mode=False)),),
            ("CREATE", "SETUPMAPPING")),
    Variant("map-without-read-access", "ACCESS-MODE",
            "SETUPMAPPING maps through a handle opened write-only",
            (_like("SETUPMAPPING", lambda s, g, h, fp, c, w, st: t.setupmapping(
                s, g, h, fp, c, w, st, check_read=False)),),
            ("CREATE", "SETUPMAPPING")),
    Variant("write-past-size-limit", "SIZE-LIMIT",
            "WRITE lets a file grow past the export's largest size",
            (_like("WRITE", lambda s, g, h, p, b, f: t.write(s, g, h, p, b, f, limit=False)),),
            ("CREATE", "WRITE")),
    Variant("resize-past-size-limit", "SIZE-LIMIT",
            "SETATTR extends a file past the export's largest size",
            (_like("SETATTR", lambda s, g, n, z: t.setattr_size(s, g, n, z, limit=False)),),
            ("CREATE", "SETATTR")),
    Variant("writable-map-read-only-export", "RO-EXPORT",
            "SETUPMAPPING by nodeid grants a writable mapping in a read-only export",
            (by_nodeid(),),
            ("host.create", "LOOKUP", "SETUPMAPPING")),
    Variant("handle-reuse", "HANDLE",
            "OPEN hands out a free handle number, which may be one already released",
            (_like("OPEN", lambda s, g, n, r, w, tr, h: t.open_(s, g, n, r, w, tr, handle=h),
                   _FH),),
            ("CREATE", "RELEASE", "OPEN")),
    Variant("nodeid-reuse", "NODEID",
            "LOOKUP hands out a free nodeid, which may be one forgotten before",
            (_like("LOOKUP", lambda s, g, p, nm, n: t.lookup(s, g, p, nm, nodeid=n), _NODE),),
            ("host.create", "LOOKUP", "FORGET", "host.create", "LOOKUP")),
    Variant("free-while-open", "LIFETIME",
            "an unlinked file is freed while a guest still holds it open",
            (_like("collect", lambda s, i: t.evict(s, i, ignore=("handles",))),),
            ("CREATE", "FORGET", "UNLINK", "collect")),
    Variant("destroy-keeps-mappings", "RECLAIM",
            "DESTROY releases handles and nodeids but leaves the guest's mappings",
            (_like("DESTROY", lambda s, g: t.destroy(s, g, unmap=False)),),
            ("CREATE", "SETUPMAPPING", "DESTROY")),
)
BY_NAME = {v.name: v for v in VARIANTS}


@dataclass
class Refutation:
    """What z3 made of a variant: ``refuted`` with a trace, or not (a failing check)."""

    variant: Variant
    verdict: str  # "refuted", "not refuted", "unknown"
    seconds: float
    trace: str = ""
    summary: str = ""


def refute(variant: Variant, timeout_ms: int = 60_000) -> Refutation:
    """Find a run of the variant's schedule, every step succeeding, from the initial state
    (read-only export or not, as z3 likes) to a state that breaks its invariant."""
    inv = BY_INVARIANT[variant.breaks]
    ops = variant.operations()
    run = bmc.scheduled(ops, d.initial(z3.Bool("read_only")))
    bad, witnesses = inductive.violation(inv, run.states[-1])
    shown = [w for ws in witnesses.values() for w in ws if z3.is_bv(w)]
    verdict, model, seconds = bmc.solve(z3.And(run.succeeded(), bad), timeout_ms,
                                        bmc.minimisable(run) + shown)
    if model is None:
        return Refutation(variant, "not refuted" if verdict == "unsat" else "unknown", seconds)
    broken = [(c, witnesses[c.says]) for c in inv.clauses]
    last = ops[-1]
    why = describe(model, f"{variant.breaks} refuted by seeded bug '{variant.name}': "
                          f"{variant.says}", last.name, [a for a, _ in last.args],
                   run.args[-1], run.states[-2], run.states[-1], broken)
    read_only = model.eval(z3.Bool("read_only"), model_completion=True)
    text = "\n".join([why.splitlines()[0], f"  run from the initial state (read_only={read_only}):",
                      bmc.trace(model, run), *why.splitlines()[2:]])
    clause = next((line for line in why.splitlines() if line.startswith("  broken:")), "")
    return Refutation(variant, "refuted", seconds, text,
                      f"{len(ops)}-step run; {clause.strip()}")
