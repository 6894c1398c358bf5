"""READ-BOUND (proofs/read_bound.py): the probe-bounded window read is proved for every
value, each seeded bug is refuted, and the design's read equals the spec's READ on
concrete states."""

from __future__ import annotations

import pytest

from pagefs.proofs import read_bound


@pytest.mark.parametrize("name", read_bound.INVARIANTS)
def test_the_design_keeps_each_invariant(name: str) -> None:
    assert read_bound.check(read_bound.DESIGN, name) == ("proved", "")


@pytest.mark.parametrize("variant", read_bound.SEEDED, ids=lambda v: v.name)
def test_each_seeded_bug_is_refuted(variant: read_bound.Variant) -> None:
    verdict, witness = read_bound.check(variant, read_bound.BREAKS[variant.name])
    assert verdict == "refuted" and witness


def test_the_design_read_is_the_spec_read_and_the_tie_catches_the_bug() -> None:
    rows = list(read_bound.tie_rows(quick=True))
    assert [r.result for r in rows] == ["pass", "refuted"], [r.detail for r in rows]
