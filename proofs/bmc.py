"""Bounded model checking: runs of k steps from the initial state, every argument symbolic.

Two uses. A *schedule* fixes which operation runs at each step and lets z3 choose every
argument (guest, inode, offset, frame, ...): seeded bugs are refuted this way with a
trace that starts from the spec's initial state, so the counterexample is reachable,
not merely a state the invariants allow. The *coherence search* enumerates every
sequence of up to k data and mapping steps of the host and two guests (arguments still
symbolic) and checks COH-READ/COH-PEER and EOF-FAULT after every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import z3

from pagefs.proofs import design as d
from pagefs.proofs.transitions import Operation, Step


@dataclass
class Run:
    """A symbolic run: the states (``states[0]`` initial), steps, and each step's args."""

    states: list[d.State]
    steps: list[Step]
    ops: list[Operation]
    args: list[list[z3.ExprRef]]

    def succeeded(self) -> z3.BoolRef:
        return z3.And([st.ok for st in self.steps])

    def then(self, op: Operation, args: list[z3.ExprRef]) -> Run:
        """This run with one more step, taken as succeeding (its ``new`` state)."""
        st = op(self.states[-1], *args)
        return Run(self.states + [d.simplified(st.new)], self.steps + [st], self.ops + [op],
                   self.args + [args])


def scheduled(schedule: Sequence[Operation], start: d.State) -> Run:
    """Run ``schedule`` from ``start`` with fresh symbolic arguments at every step, each
    step taken as succeeding: the caller asserts ``succeeded()``."""
    run = Run([start], [], [], [])
    for k, op in enumerate(schedule):
        run = run.then(op, op.symbolic_args(f"@{k}"))
    return run


def solve(goal: z3.BoolRef, timeout_ms: int, small: Sequence[z3.ExprRef] = ()
          ) -> tuple[str, z3.ModelRef | None, float]:
    """Check ``goal``; when it holds, shrink the counterexample greedily, term by term
    (offsets, sizes and identifiers no larger than the bug needs)."""
    start = time.monotonic()
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(goal)
    result = solver.check()
    if result != z3.sat:
        return ("unsat" if result == z3.unsat else "unknown"), None, time.monotonic() - start
    for term in small:
        _shrink(solver, term)
    solver.check()
    return "sat", solver.model(), time.monotonic() - start


def _shrink(solver: z3.Solver, term: z3.ExprRef) -> None:
    """Pin ``term`` to the first of 0, 1, 2 the goal allows; failing that, halve its bound
    while the goal still holds (a window count of 512 rather than 1536), then pin it.
    ``solver`` is satisfiable before and after."""
    for candidate in range(3):
        solver.push()
        solver.add(term == candidate)
        if solver.check() == z3.sat:
            return
        solver.pop()
    solver.check()
    value = solver.model().eval(term, model_completion=True).as_long()
    while value > 2:
        solver.push()
        solver.add(z3.ULE(term, value // 2))
        if solver.check() != z3.sat:
            solver.pop()
            break
        value = solver.model().eval(term, model_completion=True).as_long()
    solver.add(term == value)
    solver.check()


def minimisable(run: Run) -> list[z3.ExprRef]:
    """The bit-vector arguments of a run: the numbers a minimised trace keeps small."""
    return [a for args in run.args for a in args if z3.is_bv(a)]


def trace(model: z3.ModelRef, run: Run,
          show: Callable[[z3.ModelRef, d.State], str] | None = None) -> str:
    """The run as numbered lines: operation, arguments, errno (0 = success)."""
    lines = []
    for j, (op, args, st) in enumerate(zip(run.ops, run.args, run.steps, strict=True)):
        shown = ", ".join(f"{name}={model.eval(a, model_completion=True)}"
                          for (name, _), a in zip(op.args, args, strict=True))
        err = model.eval(st.err, model_completion=True)
        result = "ok" if str(err) == "0" else f"errno {err}"
        value = ""
        if st.value is not None:
            value = f" -> {model.eval(st.value, model_completion=True)}"
        lines.append(f"  {j + 1}. {op.name}({shown}): {result}{value}")
        if show is not None:
            lines.append(show(model, run.states[j + 1]))
    return "\n".join(lines)


# ---------------------------------------------------------------- coherence interleavings

def setup() -> Run:
    """The host creates a file (inode 2, name 1) holding one byte, 42; guests 0 and 1 each
    look it up (nodeid 2),
    open it for reading and writing (handle 1) and map its first 2 MiB writable at the
    start of the window. Concrete, so the search spends its effort on the k steps."""
    from pagefs.proofs import transitions as t

    def c(sort: z3.SortRef, n: int) -> z3.ExprRef:
        return d.val(sort, n)

    yes = z3.BoolVal(True)
    calls: list[tuple[str, list[z3.ExprRef]]] = [
        ("host.create", [c(d.Inode, 1), c(d.Name, 1)]),
        ("host.write", [c(d.Inode, 2), c(d.Size, 0), c(d.Byte, 42), c(d.Frame, 1)]),
    ]
    for g in (0, 1):
        calls += [
            ("LOOKUP", [c(d.Guest, g), c(d.Nodeid, 1), c(d.Name, 1)]),
            ("OPEN", [c(d.Guest, g), c(d.Nodeid, 2), yes, yes, z3.BoolVal(False)]),
            ("SETUPMAPPING", [c(d.Guest, g), c(d.Handle, 1), c(d.Page, 0),
                              c(d.Slot, d.RANGE_PAGES), yes, c(d.Slot, 0)]),
        ]
    run = Run([d.initial(False)], [], [], [])
    for name, args in calls:
        run = run.then(t.BY_NAME[name], args)
    return run


ALPHABET = ("host.write", "host.truncate", "STORE", "LOAD", "SETUPMAPPING")
"""The steps that move data or resolve and replace mappings, by the host and either guest
(WRITE and SETATTR reach the page cache through the same rules as host.write and
host.truncate)."""


def _coherence_broken(s: d.State, j: int) -> z3.BoolRef:
    """In state ``s``: some guest's LOAD disagrees with the host's bytes (COH-READ, and so
    COH-PEER: two guests mapping one page would see different bytes), or faults when
    it should not, or does not fault when it should (EOF-FAULT)."""
    from pagefs.proofs import transitions as t
    from pagefs.proofs.refinement import abstract

    g, sl = z3.Const(f"g!{j}", d.Guest), z3.Const(f"slot!{j}", d.Slot)
    off = z3.Const(f"offset!{j}", d.Offset)
    st = t.load(s, g, sl, off)
    i, p = s.map_ino[g, sl], s.map_page[g, sl]
    should_fault = z3.Or(i == d.NONE, t.beyond_eof(s, i, p))
    return z3.Or((st.err == t.EFAULT) != should_fault,
                 z3.And(st.ok, st.value != abstract(s, i, d.position(p, off))))


@dataclass
class Search:
    """The outcome of an exhaustive bounded search: how many runs, and a bad one if any."""

    verdict: str  # "unsat" (no run of length <= k breaks it), "sat", "unknown"
    runs: int
    seconds: float
    model: z3.ModelRef | None = None
    run: Run | None = None


def coherence(k: int, timeout_ms: int, alphabet: Sequence[Operation] | None = None,
              budget_s: float = float("inf")) -> Search:
    """Every run of up to k steps of the host and two guests after the setup, the
    operation at each step enumerated and every argument symbolic: none may reach a
    state where a guest's load breaks COH-READ/COH-PEER or EOF-FAULT.

    The runs form a tree searched depth first on one incremental solver: a step's
    success is asserted once for all the runs below it.
    """
    from pagefs.proofs import transitions as t

    ops = list(alphabet) if alphabet is not None else [t.BY_NAME[n] for n in ALPHABET]
    prefix = setup()
    start = time.monotonic()
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(prefix.succeeded())
    searched = 0

    def visit(run: Run) -> Search | None:
        nonlocal searched
        if time.monotonic() - start > budget_s:
            return Search("unknown", searched, time.monotonic() - start)
        searched += 1
        solver.push()
        solver.add(_coherence_broken(run.states[-1], len(run.steps)))
        result = solver.check()
        if result != z3.unsat:
            found = Search("sat" if result == z3.sat else "unknown", searched,
                           time.monotonic() - start,
                           solver.model() if result == z3.sat else None, run)
            solver.pop()
            return found
        solver.pop()
        if len(run.steps) - len(prefix.steps) == k:
            return None
        for op in ops:
            args = op.symbolic_args(f"@{len(run.steps)}")
            longer = run.then(op, args)
            solver.push()
            solver.add(longer.steps[-1].ok, _two_guests([args]))
            bad = visit(longer)
            solver.pop()
            if bad is not None:
                return bad
        return None

    bad = visit(prefix)
    if bad is not None:
        return bad
    return Search("unsat", searched, time.monotonic() - start)


def _two_guests(args: Sequence[Sequence[z3.ExprRef]]) -> z3.BoolRef:
    return z3.And([z3.ULE(a, 1) for group in args for a in group if a.sort() == d.Guest])


def explain_coherence(model: z3.ModelRef, run: Run) -> str:
    """The run, then the load that goes wrong in its last state."""
    from pagefs.proofs import transitions as t
    from pagefs.proofs.refinement import abstract

    j = len(run.steps)
    s = run.states[-1]
    g, sl = z3.Const(f"g!{j}", d.Guest), z3.Const(f"slot!{j}", d.Slot)
    off = z3.Const(f"offset!{j}", d.Offset)
    st = t.load(s, g, sl, off)
    i, p = s.map_ino[g, sl], s.map_page[g, sl]

    def ev(term: z3.ExprRef) -> str:
        return str(model.eval(term, model_completion=True))

    faulted = ev(st.err) == str(t.EFAULT)
    seen = "FAULT" if faulted else ev(st.value)
    host = ev(abstract(s, i, d.position(p, off)))
    return "\n".join([
        trace(model, run),
        f"  then LOAD(g={ev(g)}, slot={ev(sl)}, offset={ev(off)}) -> {seen}; the window page"
        f" maps inode {ev(i)} page {ev(p)} (size {ev(s.size[i])}), whose byte on the host"
        f" is {host}",
    ])
