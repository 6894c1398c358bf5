"""The refinement's spec side (refinement.EFFECTS) agrees with pagefs.spec on every state
the enumeration reaches, and a wrong restatement is caught."""

from __future__ import annotations

import pytest

from pagefs.proofs import refinement, restatement


def test_restatement_agrees_with_the_spec() -> None:
    c = restatement.check(1)
    assert not c.first and c.states >= 5 and c.comparisons == c.states * len(restatement.CALLS)


def test_a_wrong_resize_restatement_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resize that forgets to zero what lay past the old end of file."""
    good = refinement.EFFECTS["host.truncate"]
    monkeypatch.setitem(refinement.EFFECTS, "host.truncate", lambda s, a, i, q: (
        refinement.abstract(s, i, q), good(s, a, i, q)[1]))
    c = restatement.check(2)
    assert "host.truncate" in c.first
