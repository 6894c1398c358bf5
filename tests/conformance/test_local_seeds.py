"""`local` (the host filesystem through syscalls, Linux as ground truth) conforms on many
seeds: a departure here is a bug in the spec or in the harness, never in `local`.

Each departure found so far became a rule with its reason written in it (host rename of
"d/a" with d a regular file is ENOTDIR; OPENDIR of a directory the host removed may
succeed; LOOKUP of '.' or '..' there may be EINVAL) or a harness fix (MKNOD judges its
parent before its name, as the harness's other requests do). An inconclusive property
counts as a departure here: a case cut short judged nothing. The slow test runs 20 seeds
(reports/local-seeds.md, `pagefs-conformance run --target local --seeds 0-19
--examples 15`); the quick one two, in `make test`.
"""

from __future__ import annotations

import pytest

from pagefs.conformance import targets
from pagefs.conformance.report import NA, PASS
from pagefs.conformance.runner import run

SEEDS = range(20)  # as reports/local-seeds.md: seeds 0 to 19


def _departures(seed: int, examples: int) -> list[str]:
    with targets.factory("local") as factory:
        report = run(factory, examples=examples, seed=seed, show_progress=False,
                     shrink_seconds=10)
    return [f"seed {seed}: {v.property} {v.result}: {v.detail} {' | '.join(v.trace[-3:])}"
            for v in report.verdicts if v.result not in (PASS, NA)]


@pytest.mark.parametrize("seed", [1, 2])
def test_local_conforms_quick(seed: int) -> None:
    assert not _departures(seed, examples=5)


@pytest.mark.slow
def test_local_conforms_on_20_seeds() -> None:
    found = [d for seed in SEEDS for d in _departures(seed, examples=15)]
    assert not found, "\n".join(found)
