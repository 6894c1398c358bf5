"""`make verify`'s conformance stage: a quick run of the pagefs target, judged per property.

The verify driver (`pagefs/verify.py`) turns the report into table rows; this layer knows
nothing of the table."""

from __future__ import annotations

from pagefs.conformance import targets
from pagefs.conformance.report import Report
from pagefs.conformance.runner import run

# A quick run must fit in about two minutes beside the other stages.
QUICK = {"examples": 10, "steps": 20, "shrink_seconds": 15.0}
THOROUGH = {"examples": 40, "steps": 30, "shrink_seconds": 60.0}


def budget(quick: bool = True) -> dict[str, float]:
    return QUICK if quick else THOROUGH


def report(quick: bool = True, target: str = "pagefs") -> Report:
    """A seeded run of every property against a fresh pagefs-host, driven on the wire
    (`pagefs`) or through the guest driver's API (`pagefs-api`)."""
    chosen = budget(quick)
    with targets.factory(target) as factory:
        return run(factory, examples=int(chosen["examples"]), steps=int(chosen["steps"]),
                   seed=0, show_progress=False, shrink_seconds=chosen["shrink_seconds"])
