"""Bounded model checking: runs of k steps from the initial state, every argument symbolic.

Two uses. A *schedule* fixes which operation runs at each step and lets z3 choose every
argument (guest, inode, offset, frame, ...): seeded bugs are refuted this way with a
trace that starts from the spec's initial state, so the counterexample is reachable,
not merely a state the invariants allow. An *interleaving* lets z3 choose the
operation at each step too, among the host's and two guests' data and mapping steps,
and checks COH-PEER and EOF-FAULT after every step.
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
    ops: list[Operation | tuple[z3.ArithRef, Sequence[Operation]]]
    args: list[list[z3.ExprRef]]

    def enabled(self) -> z3.BoolRef:
        return z3.And([st.enabled for st in self.steps])

    def succeeded(self) -> z3.BoolRef:
        return z3.And([st.ok for st in self.steps])


def scheduled(schedule: Sequence[Operation], start: d.State) -> Run:
    """Run ``schedule`` from ``start`` with fresh symbolic arguments at every step, each
    step taken as succeeding: the caller asserts ``succeeded()``."""
    run = Run([start], [], [], [])
    for k, op in enumerate(schedule):
        args = op.symbolic_args(f"@{k}")
        st = op(run.states[-1], *args)
        run.states.append(st.new)
        run.steps.append(st)
        run.ops.append(op)
        run.args.append(args)
    return run


def interleaved(alphabet: Sequence[Operation], k: int, start: d.State) -> Run:
    """k steps; at each, z3 picks which operation of ``alphabet`` runs (``pick@k``)."""
    run = Run([start], [], [], [])
    for j in range(k):
        pick = z3.Int(f"pick@{j}")
        state = run.states[-1]
        choices, all_args = [], []
        for m, op in enumerate(alphabet):
            args = op.symbolic_args(f"@{j}.{m}")
            choices.append(op(state, *args))
            all_args.extend(args)
        post = choices[-1].post
        enabled = choices[-1].enabled
        err = choices[-1].err
        for m in range(len(alphabet) - 2, -1, -1):
            chosen = pick == m
            post = d.ite(chosen, choices[m].post, post)
            enabled = z3.If(chosen, choices[m].enabled, enabled)
            err = z3.If(chosen, choices[m].err, err)
        enabled = z3.And(pick >= 0, pick < len(alphabet), enabled)
        run.states.append(post)
        run.steps.append(Step(enabled, err, None, post, post))
        run.ops.append((pick, alphabet))
        run.args.append(all_args)
    return run


def solve(goal: z3.BoolRef, timeout_ms: int, small: Sequence[z3.ExprRef] = ()
          ) -> tuple[str, z3.ModelRef | None, float]:
    """Check ``goal``; when it holds, minimise the counterexample greedily, term by term:
    each of the ``small`` terms is pinned to zero if the goal still holds (offsets, sizes
    and identifiers no larger than the bug needs)."""
    start = time.monotonic()
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(goal)
    result = solver.check()
    if result != z3.sat:
        return ("unsat" if result == z3.unsat else "unknown"), None, time.monotonic() - start
    for term in small:
        solver.push()
        solver.add(term == 0)
        if solver.check() != z3.sat:
            solver.pop()
    solver.check()
    return "sat", solver.model(), time.monotonic() - start


def minimisable(run: Run) -> list[z3.ExprRef]:
    """The bit-vector arguments of a run: the numbers a minimised trace keeps small."""
    return [a for args in run.args for a in args if z3.is_bv(a)]


def trace(model: z3.ModelRef, run: Run,
          show: Callable[[z3.ModelRef, d.State], str] | None = None) -> str:
    """The run as numbered lines: operation, arguments, errno (0 = success)."""
    lines = []
    for j, (op, args, st) in enumerate(zip(run.ops, run.args, run.steps, strict=True)):
        if isinstance(op, tuple):
            pick, alphabet = op
            chosen = alphabet[model.eval(pick, model_completion=True).as_long()]
            m = alphabet.index(chosen)
            args = [a for a in args if str(a).endswith(f"@{j}.{m}")]
            op = chosen
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
