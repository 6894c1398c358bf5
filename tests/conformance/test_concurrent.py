"""Concurrent conformance: host (a process) and guests (threads) at once, each history
checked for linearizability against the spec by a bounded search."""

from pagefs.conformance import targets
from pagefs.conformance.concurrent import check, to_markdown, torn_writes


def test_pagefs_histories_are_linearizable():
    with targets.factory("pagefs") as factory:
        result = check(factory, rounds=4, ops_per_worker=6, seed=1)
    assert [r.linearizable for r in result.rounds] == [True] * 4
    assert all(len(r.events) == 18 for r in result.rounds)  # host + two guests


def test_a_target_whose_writes_tear_is_not_linearizable():
    # Each WRITE goes as two halves with a pause between: every step alone is what the
    # spec allows, so only the concurrent history shows it.
    with targets.factory("pagefs") as factory:
        result = check(torn_writes(factory), rounds=12, ops_per_worker=8, seed=0)
    assert result.violations, "no torn write was seen by a concurrent host read"
    text = to_markdown([result], seed=0, ops_per_worker=8)
    assert "a history no order explains" in text and "WRITE" in text
