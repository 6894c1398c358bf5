"""Counterexamples as readable text: the step, its arguments, and the state entries the
broken clause reads, before and after the step.

The entries shown are found mechanically: the clause is instantiated on a placeholder
state, every array read in it (``pc[i, p]``, ``owner[pc[i, p]]`` ...) is collected,
and each read is evaluated in the model on the state before and after the step.
"""

from __future__ import annotations

import z3

from pagefs.proofs import design
from pagefs.proofs.invariants import Clause


def _reads(term: z3.ExprRef, found: list[z3.ExprRef]) -> None:
    if z3.is_select(term) and not any(term.eq(x) for x in found):
        for child in term.children():
            _reads(child, found)
        found.append(term)
        return
    if z3.is_quantifier(term):
        return
    for child in term.children():
        _reads(child, found)


def _label(term: z3.ExprRef) -> str:
    """``pc[i, p]`` rather than ``Select(ph.pc, i!0, p!0)``."""
    if z3.is_select(term):
        array, *index = term.children()
        return f"{_label(array)}[{', '.join(_label(x) for x in index)}]"
    if z3.is_const(term) and term.decl().kind() == z3.Z3_OP_UNINTERPRETED:
        return str(term.decl().name()).removeprefix("ph.").split("!")[0]
    return str(term)


def _value(model: z3.ModelRef, term: z3.ExprRef) -> str:
    v = model.eval(term, model_completion=True)
    return str(v)


def clause_reads(clause: Clause, witnesses: list[z3.ExprRef]) -> list[z3.ExprRef]:
    """The array reads of ``clause`` at ``witnesses``, on the placeholder state ``ph``."""
    found: list[z3.ExprRef] = []
    _reads(clause.body(design.symbolic("ph"), *witnesses), found)
    scalars = [z3.Const("ph.read_only", z3.BoolSort()), z3.Const("ph.next_ino", design.Inode)]
    return found + [s for s in scalars if any(s.eq(c) for c in _consts(found))]


def _consts(terms: list[z3.ExprRef]) -> list[z3.ExprRef]:
    out: list[z3.ExprRef] = []
    for t in terms:
        for c in t.children():
            if z3.is_const(c) and c.decl().kind() == z3.Z3_OP_UNINTERPRETED:
                out.append(c)
    return out


def _on(state: design.State, term: z3.ExprRef) -> z3.ExprRef:
    """``term`` (over the placeholder state) read on ``state`` instead."""
    ph = design.symbolic("ph")
    pairs = [(getattr(ph, name), getattr(state, name)) for name in design.field_names()]
    return z3.substitute(term, *pairs)


def describe(model: z3.ModelRef, title: str, op_name: str, arg_names: list[str],
             args: list[z3.ExprRef], pre: design.State, post: design.State,
             broken: list[tuple[Clause, list[z3.ExprRef]]]) -> str:
    """A few lines: the step with its arguments, each broken clause with its witnesses and
    the entries it reads (before -> after)."""
    lines = [title]
    shown = ", ".join(f"{n}={_value(model, a)}" for n, a in zip(arg_names, args, strict=True))
    lines.append(f"  step: {op_name}({shown})")
    for clause, xs in broken:
        if z3.is_true(model.eval(clause.body(post, *xs), model_completion=True)):
            continue
        names = ", ".join(f"{n}={_value(model, x)}"
                          for (n, _), x in zip(clause.variables, xs, strict=True))
        lines.append(f"  broken: {clause.says}" + (f" [at {names}]" if names else ""))
        for read in clause_reads(clause, xs):
            before, after = _value(model, _on(pre, read)), _value(model, _on(post, read))
            change = before if before == after else f"{before} -> {after}"
            lines.append(f"    {_label(read)} = {change}")
    return "\n".join(lines)
