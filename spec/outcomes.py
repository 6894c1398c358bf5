"""Building an operation's allowed outcomes.

An operation answers with a tuple of `Outcome`s. A refusal leaves the state as it was
and, when several errnos apply, allows each of them. A success passes its next state
through `collect`, so an inode nobody names or holds any more is freed at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from pagefs.spec.datatypes import FAULT, Err, Errno, Ok, Outcome, State, Value
from pagefs.spec.properties import Step, step_violations, violations
from pagefs.spec.tree import collect


def refuse(state: State, errnos: Iterable[Errno]) -> tuple[Outcome, ...]:
    """Every errno in `errnos` is an allowed answer, and none changes anything."""
    return tuple(Outcome(Err(e), state) for e in sorted(set(errnos)))


def ok(state: State, value: Value = None) -> tuple[Outcome, ...]:
    """The one allowed outcome: success with `value` and next state `state`."""
    return (Outcome(Ok(value), collect(state)),)


def fault(state: State) -> tuple[Outcome, ...]:
    """A memory access faulted; nothing changed."""
    return (Outcome(FAULT, state),)


def either(*choices: tuple[Outcome, ...]) -> tuple[Outcome, ...]:
    """The union of several allowed sets, without repeats, in a stable order."""
    seen: dict[Outcome, None] = {}
    for outcomes in choices:
        for outcome in outcomes:
            seen.setdefault(outcome, None)
    return tuple(seen)


def sound(state: State, outcomes: tuple[Outcome, ...]) -> bool:
    """What every operation promises: at least one allowed outcome, no outcome changes the
    configuration, and a refusal (an errno) or a fault of a load changes nothing."""
    return bool(outcomes) and all(
        o.state.config == state.config
        and (o.state == state if isinstance(o.result, Err) else True)
        for o in outcomes
    )


def ok_values(outcomes: tuple[Outcome, ...]) -> tuple[Value, ...]:
    """The values of the successful outcomes (for contracts about what succeeds)."""
    return tuple(o.result.value for o in outcomes if isinstance(o.result, Ok))


def lawful(state: State, op: str, args: tuple[object, ...], outcomes: tuple[Outcome, ...]) -> bool:
    """The contract every operation carries: its outcomes are `sound`, and each of them
    keeps every named property, both as a step and in the state it leads to (given a
    state that kept them)."""
    return sound(state, outcomes) and (bool(violations(state)) or all(
        not step_violations(Step(state, op, args, o)) and not violations(o.state)
        for o in outcomes))
