"""The spec self-check stage of `make verify` (proofs/spec_selfcheck.py)."""

from pagefs.proofs.spec_selfcheck import DESIGN_PROPERTIES, MUTANTS, _caught, rows


def test_every_property_has_a_seeded_bug_it_catches() -> None:
    assert {m.property for m in MUTANTS} == set(DESIGN_PROPERTIES)
    for mutant in MUTANTS:
        assert _caught(mutant, walks=300, steps=40) is not None, mutant.description


def test_selfcheck_rows_all_pass() -> None:
    results = list(rows(quick=True))
    failed = [(r.property, r.operation, r.detail) for r in results if not r.ok]
    assert not failed
    assert len(results) >= 16 * 2 + 4
