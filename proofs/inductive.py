"""Inductive proofs: if every invariant holds before a step, the chosen one holds after.

One query per (operation, invariant): ``all_hold(s) and step.enabled and not
inv(step.post)`` must be unsatisfiable. The negated invariant is skolemised by hand
(fresh named witnesses per clause), so a counterexample names the guest, page or
frame that breaks it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import z3

from pagefs.proofs import design
from pagefs.proofs.explain import describe
from pagefs.proofs.invariants import Invariant, all_hold
from pagefs.proofs.transitions import Operation, Step

TIMEOUT_MS = 60_000


@dataclass
class Outcome:
    verdict: str  # "proved", "counterexample", "unknown"
    seconds: float
    model: z3.ModelRef | None = None
    pre: design.State | None = None
    step: Step | None = None
    args: list[z3.ExprRef] | None = None
    witnesses: dict[str, list[z3.ExprRef]] | None = None


def violation(inv: Invariant, s: design.State) -> tuple[z3.BoolRef, dict[str, list[z3.ExprRef]]]:
    """Some clause of ``inv`` fails in ``s``, at named witnesses."""
    cases, witnesses = [], {}
    for k, clause in enumerate(inv.clauses):
        xs = clause.bound(f"!{k}")
        witnesses[clause.says] = xs
        cases.append(z3.Not(clause.body(s, *xs)))
    return z3.Or(cases), witnesses


def check(solver_goal: z3.BoolRef, timeout_ms: int = TIMEOUT_MS) -> tuple[z3.CheckSatResult,
                                                                          z3.Solver]:
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(solver_goal)
    return solver.check(), solver


def explain(outcome: Outcome, inv: Invariant, op: Operation, title: str) -> str:
    """The counterexample of a failed step proof, as text."""
    assert outcome.model is not None and outcome.step is not None
    assert outcome.pre is not None and outcome.args is not None and outcome.witnesses
    broken = [(c, outcome.witnesses[c.says]) for c in inv.clauses]
    return describe(outcome.model, title, op.name, [a for a, _ in op.args], outcome.args,
                    outcome.pre, outcome.step.post, broken)


def _verdict(result: z3.CheckSatResult) -> str:
    if result == z3.unsat:
        return "proved"
    return "counterexample" if result == z3.sat else "unknown"


def prove_step(op: Operation, inv: Invariant, timeout_ms: int = TIMEOUT_MS) -> Outcome:
    start = time.monotonic()
    s = design.symbolic("s")
    args = op.symbolic_args()
    st = op(s, *args)
    bad, witnesses = violation(inv, st.post)
    result, solver = check(z3.And(all_hold(s), st.enabled, bad), timeout_ms)
    seconds = time.monotonic() - start
    if result == z3.unsat:
        return Outcome("proved", seconds)
    if result == z3.sat:
        return Outcome("counterexample", seconds, solver.model(), s, st, args, witnesses)
    return Outcome("unknown", seconds)


def prove_initial(inv: Invariant, timeout_ms: int = TIMEOUT_MS) -> Outcome:
    start = time.monotonic()
    bad, _ = violation(inv, design.initial(z3.Bool("read_only")))
    result, _ = check(bad, timeout_ms)
    return Outcome(_verdict(result), time.monotonic() - start)
