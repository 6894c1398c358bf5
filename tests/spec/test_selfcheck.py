"""The spec self-check stage of `make verify` (proofs/spec_selfcheck.py)."""

from pagefs.proofs.spec_selfcheck import (
    DESIGN_PROPERTIES,
    MUTANTS,
    _caught,
    _coverage_rows,
    _docs_row,
    _property_rows,
)


def test_every_property_has_a_seeded_bug_it_catches() -> None:
    assert {m.property for m in MUTANTS} == set(DESIGN_PROPERTIES)
    for mutant in MUTANTS:
        assert _caught(mutant, walks=300, steps=40) is not None, mutant.description


def test_selfcheck_rows_pass_on_a_smaller_budget() -> None:
    rows = [*_coverage_rows(), _docs_row(), *_property_rows(walks=30, steps=20, sweep_limit=8)]
    failed = [(r.property, r.operation, r.detail) for r in rows if not r.ok]
    assert not failed
    assert {r.property for r in rows} >= set(DESIGN_PROPERTIES) | {"JSON round trip"}
