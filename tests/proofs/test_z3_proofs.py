"""The z3 stage itself: its proofs hold, and each of its checks can fail.

The full table runs in ``make verify``; here a fast sample of every kind of row, and
the cases that show a check is not vacuous: a seeded bug is refuted, an inductive
proof of a broken transition does not come back "proved", and the bounded search finds
a bug it is given.
"""

from __future__ import annotations

import dataclasses

import pytest

from pagefs.proofs import (
    bmc,
    inductive,
    invariants,
    refinement,
    seeded_bugs,
    transitions,
    z3_driver,
)

DATA_OPS = ("host.write", "host.truncate", "collect", "SETUPMAPPING", "LOAD", "STORE")


def test_initial_state_satisfies_every_invariant() -> None:
    assert [inductive.prove_initial(inv).verdict for inv in invariants.ALL] == \
        ["proved"] * len(invariants.ALL)


@pytest.mark.parametrize("op_name", DATA_OPS)
def test_data_operations_keep_every_invariant(op_name: str) -> None:
    op = transitions.BY_NAME[op_name]
    verdicts = {inv.name: inductive.prove_step(op, inv).verdict for inv in invariants.ALL}
    assert verdicts == {inv.name: "proved" for inv in invariants.ALL}


def test_one_generated_proof_per_operation_and_invariant() -> None:
    names = [(op.name, inv.name) for op in transitions.OPERATIONS for inv in invariants.ALL]
    assert len(set(names)) == len(transitions.OPERATIONS) * len(invariants.ALL)


def test_a_broken_transition_is_not_proved() -> None:
    """The inductive harness can fail: truncate without zapping is not ISOLATION-safe."""
    buggy = seeded_bugs.BY_NAME["truncate-without-zap"].replaces[0]
    assert inductive.prove_step(buggy, invariants.ISOLATION, timeout_ms=5000).verdict != "proved"


@pytest.mark.parametrize("variant", seeded_bugs.VARIANTS, ids=lambda v: v.name)
def test_every_seeded_bug_is_refuted_with_a_trace(variant: seeded_bugs.Variant) -> None:
    r = seeded_bugs.refute(variant)
    assert r.verdict == "refuted"
    assert "run from the initial state" in r.trace and "broken:" in r.trace
    assert f"{len(variant.schedule)}. " in r.trace  # every step of the run is shown


def test_every_invariant_has_a_seeded_bug() -> None:
    assert {v.breaks for v in seeded_bugs.VARIANTS} == {inv.name for inv in invariants.ALL}


def test_coherence_theorems_and_store_refinement() -> None:
    assert [th().verdict for th in refinement.named()] == ["proved"] * len(refinement.named())
    assert refinement.data_refinement(transitions.BY_NAME["STORE"]).verdict == "proved"
    for name in ("WRITE", "STORE", "SETATTR", "CREATE"):
        assert refinement.no_write_path(transitions.BY_NAME[name]).verdict == "proved"


def test_bounded_search_passes_and_finds_a_given_bug() -> None:
    assert bmc.coherence(2, 60_000).verdict == "unsat"
    rows = list(z3_driver.bmc_rows(1))
    assert [r.ok for r in rows] == [True, True]
    assert rows[1].result == "refuted"


def test_explain_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert z3_driver.main(["--explain", "handle-reuse"]) == 0
    out = capsys.readouterr().out
    assert "RELEASE" in out and "a released handle stays released" in out
    assert z3_driver.main(["--explain", "no-such-bug"]) == 2


def test_read_only_export_mapping_bug_is_the_missing_export_check() -> None:
    """SETUPMAPPING by nodeid is refuted in a read-only export, and only for skipping the
    export's flag: with that one check back, no run of the same schedule breaks RO-EXPORT."""
    variant = seeded_bugs.BY_NAME["writable-map-read-only-export"]
    refuted = seeded_bugs.refute(variant)
    assert "read_only=True" in refuted.trace
    assert "no window page is mapped writable" in refuted.summary
    fixed = dataclasses.replace(variant, replaces=(seeded_bugs.by_nodeid(check_export=True),))
    assert seeded_bugs.refute(fixed).verdict == "not refuted"
