"""The truncate split into its sub-steps against a LOAD in flight (proofs/concurrency.py):
the design holds in every interleaving, and each seeded bug is refuted."""

from __future__ import annotations

import pytest

from pagefs.proofs import concurrency


def test_every_interleaving_is_counted() -> None:
    orders = concurrency.interleavings()
    assert len(orders) == 10 == len(set(orders))
    assert all(o.count("h") == 3 and o.count("g") == 2 for o in orders)


def test_design_holds_where_the_race_is() -> None:
    """The access looks up before the truncate and commits after it: the invalidation
    sequence changed, so it retries instead of reading a freed frame."""
    for order in (("g", "h", "h", "h", "g"), ("g", "h", "h", "g", "h"), ("h", "g", "g", "h", "h")):
        assert concurrency.check(concurrency.CORRECT, order).verdict == "proved", order


@pytest.mark.parametrize("model", concurrency.SEEDED, ids=lambda m: m.name)
def test_seeded_bugs_are_refuted(model: concurrency.Model) -> None:
    found = [concurrency.check(model, o) for o in concurrency.interleavings()]
    refuted = [r for r in found if r.verdict == "refuted"]
    assert refuted, [r.verdict for r in found]
    assert "frame" in refuted[0].witness
