"""The declared operations are the machine's rules and the spec's operations."""

from __future__ import annotations

from hypothesis.stateful import RuleBasedStateMachine

from pagefs.conformance.families import FAMILIES
from pagefs.conformance.machines import SpecMachine
from pagefs.conformance.operations import OPERATIONS, operations
from pagefs.spec import REGISTRY


def _rule_names(machine: type[RuleBasedStateMachine]) -> set[str]:
    return {r.function.__name__ for r in machine.setup_state().rules}


def test_every_declared_operation_is_a_spec_operation_and_a_rule() -> None:
    names = [op.name for op in OPERATIONS]
    assert len(names) == len(set(names))
    assert set(names) <= set(REGISTRY)
    assert {op.rule_name for op in OPERATIONS} | {"idle"} == _rule_names(SpecMachine)


def test_every_family_runs_declared_operations_only() -> None:
    for family in FAMILIES:
        assert family.operations and family.operations <= set(OPERATIONS), family.name


def test_an_undeclared_name_is_refused() -> None:
    try:
        operations("LOOKUP", "NO-SUCH-OP")
    except KeyError as e:
        assert "NO-SUCH-OP" in str(e)
    else:
        raise AssertionError("an undeclared operation was accepted")
