"""`make verify`: run every check that backs pagefs's claims and print one table.

The driver sits above both layers it runs: each stage is a function
``rows(quick: bool) -> Iterable[Row]`` named as ``module:function``; the proof stages
live in ``proofs/``, the conformance stage turns a ``conformance.quick`` report into rows
here, so neither layer imports the other. The driver imports each stage, runs it, times
it, and reports. A stage that is missing or
raises is itself a failing row, so nothing goes unchecked silently.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable, Iterator

from pagefs.conformance.report import FAIL, NA, PASS, Verdict
from pagefs.proofs.table import Row, render

# Order matters only for reading: cheapest and most fundamental first.
STAGES: tuple[tuple[str, str], ...] = (
    ("spec self-checks", "pagefs.proofs.spec_selfcheck:rows"),
    ("CrossHair", "pagefs.proofs.crosshair_spec:rows"),
    ("z3", "pagefs.proofs.z3_driver:rows"),
    ("concurrency", "pagefs.proofs.concurrency:rows"),
    ("read bound", "pagefs.proofs.read_bound:rows"),
    ("design = spec", "pagefs.proofs.enumeration:rows"),
    ("refinement = spec", "pagefs.proofs.restatement:rows"),
    ("conformance", "pagefs.verify:conformance_rows"),
)


def conformance_rows(quick: bool = True) -> Iterator[Row]:
    """The quick conformance run of the pagefs target, one row per property, then of
    pagefs-api (the guest driver's API). A row is ok only when the property was judged
    and held: n/a and inconclusive fail the table. The two properties no request
    sequence shows are measured on the real daemon instead (conformance.measured):
    SINGLE-COPY by the guest memory benchmark, DURABLE on a loop device read back below
    every cache. What the API cannot express is n/a on pagefs-api, with the reason, and
    its row stands or falls with the same property's row on pagefs."""
    from pagefs.conformance import measured
    from pagefs.conformance import quick as stage

    budget = stage.budget(quick)
    report = stage.report(quick)
    method = f"hypothesis stateful, {budget['examples']:g} cases x {budget['steps']:g} steps"
    measures: dict[str, tuple[Callable[[], Verdict], str]] = {
        "SINGLE-COPY": (measured.single_copy, "guest memory benchmark (memprobe)"),
        "DURABLE": (measured.durable, "ext4 on a loop device, O_DIRECT read-back")}
    wire: dict[str, Row] = {}
    for v in report.verdicts:
        how = method
        if v.property in measures and v.result == NA:
            measure, how = measures[v.property]
            v = measure()
        wire[v.property] = verdict_row(v, "pagefs", how)
        yield wire[v.property]
    for v in stage.report(quick, target="pagefs-api").verdicts:
        row = verdict_row(v, "pagefs-api", method)
        if v.result == NA:
            judged = wire.get(v.property)
            row = Row(row.property, row.operation, "-", "n/a (judged on pagefs)",
                      bool(judged and judged.ok), 0.0, v.detail)
        yield row


def verdict_row(v: Verdict, target: str, how: str) -> Row:
    """A conformance verdict as a table row: ok only when judged and held (pass)."""
    detail = v.detail
    if v.result == FAIL and v.trace:
        # The shortest trace, on one line: the failing step last.
        detail = " | ".join(line.strip() for line in v.trace[-4:])
    if v.result != NA:
        detail = f"{v.judged} judged steps; {detail}" if detail else f"{v.judged} judged steps"
    result = "untested" if v.detail.startswith("untested") else v.result
    return Row(v.property, f"{target} ({v.family})", how if v.result != NA else "-",
               result, v.result == PASS, v.seconds, detail)


def _run_stage(name: str, where: str, quick: bool) -> Iterator[Row]:
    start = time.monotonic()
    module, function = where.split(":")
    try:
        stage = getattr(importlib.import_module(module), function)
        yield from stage(quick=quick)
    except Exception as exc:  # a broken stage is a failed check, never a crash of the table
        traceback.print_exc(file=sys.stderr)
        yield Row(name, where, name, "ERROR", False, time.monotonic() - start,
                  f"{type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pagefs-verify", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", action="append", choices=[s for s, _ in STAGES],
                        help="run only this stage (repeatable)")
    parser.add_argument("--thorough", action="store_true",
                        help="larger budgets and bounds than the default quick run")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    tables = []
    for name, module in STAGES:
        if args.stage and name not in args.stage:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        stage: list[Row] = []
        for row in _run_stage(name, module, quick=not args.thorough):
            print(f"   {row.result:<8} {row.property} / {row.operation} ({row.method})",
                  file=sys.stderr, flush=True)
            stage.append(row)
        bad = sum(not r.ok for r in stage)
        tables.append(f"== {name}: {len(stage)} checks, {bad} failed\n{render(stage)}")
        rows += stage
    print("\n\n".join(tables))
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    for r in failed:
        print(f"FAILED: {r.property} / {r.operation} ({r.method}): {r.detail}")
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
