"""`make verify`'s conformance stage: a quick run of the pagefs target, one row per property."""

from __future__ import annotations

from collections.abc import Iterator

from pagefs.conformance import targets
from pagefs.conformance.report import ERROR, FAIL, NA, PASS
from pagefs.conformance.runner import run
from pagefs.proofs.verify import Row

# A quick run must fit in about two minutes beside the other stages.
QUICK = {"examples": 10, "steps": 20, "shrink_seconds": 15.0}
THOROUGH = {"examples": 40, "steps": 30, "shrink_seconds": 60.0}


def rows(quick: bool = True) -> Iterator[Row]:
    budget = QUICK if quick else THOROUGH
    with targets.factory("pagefs") as factory:
        report = run(factory, examples=budget["examples"], steps=budget["steps"], seed=0,
                     show_progress=False, shrink_seconds=budget["shrink_seconds"])
    method = f"hypothesis stateful, {budget['examples']} cases x {budget['steps']} steps"
    for v in report.verdicts:
        result = {PASS: "pass", FAIL: "FAIL", NA: "n/a", ERROR: "ERROR"}[v.result]
        detail = v.detail
        if v.result == FAIL and v.trace:
            # The shortest trace, on one line: the failing step last.
            detail = " | ".join(line.strip() for line in v.trace[-4:])
        yield Row(v.property, f"pagefs ({v.family})", method if v.result != NA else "-",
                  result, v.ok, v.seconds, detail)
