"""`make verify`: run every check that backs pagefs's claims and print one table.

Each stage is a module exposing ``rows(quick: bool) -> Iterable[Row]``; the
driver imports it, runs it, times it, and reports. A stage that is missing or
raises is itself a failing row, so nothing goes unchecked silently.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Order matters only for reading: cheapest and most fundamental first.
STAGES: tuple[tuple[str, str], ...] = (
    ("spec self-checks", "pagefs.proofs.spec_selfcheck"),
    ("CrossHair", "pagefs.proofs.crosshair_spec"),
    ("z3", "pagefs.proofs.z3_driver"),
    ("conformance", "pagefs.conformance.quick"),
)


@dataclass(frozen=True)
class Row:
    """One line of the verify table."""

    property: str  # a named property (COH-READ, ...) or a contract's name
    operation: str  # the operation, module or scope the check covers
    method: str  # "z3 inductive", "z3 BMC k=8", "z3 seeded bug", "CrossHair", ...
    result: str  # "proved", "refuted", "pass", "FAIL", "n/a", ...
    ok: bool
    seconds: float = 0.0
    detail: str = ""  # one line: a counterexample summary, a budget, a reason


def _run_stage(name: str, module: str, quick: bool) -> Iterator[Row]:
    start = time.monotonic()
    try:
        stage = importlib.import_module(module)
        yield from stage.rows(quick=quick)
    except Exception as exc:  # a broken stage is a failed check, never a crash of the table
        traceback.print_exc(file=sys.stderr)
        yield Row(name, module, name, "ERROR", False, time.monotonic() - start,
                  f"{type(exc).__name__}: {exc}")


def render(rows: Iterable[Row]) -> str:
    """Format rows as a fixed-width table, one row per check."""
    headers = ("property", "operation", "method", "result", "time")
    cells = [(r.property, r.operation, r.method, r.result + ("" if r.ok else " ✗"),
              f"{r.seconds:.2f}s") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*c) for c in cells]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pagefs-verify", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", action="append", choices=[s for s, _ in STAGES],
                        help="run only this stage (repeatable)")
    parser.add_argument("--thorough", action="store_true",
                        help="larger budgets and bounds than the default quick run")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for name, module in STAGES:
        if args.stage and name not in args.stage:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        for row in _run_stage(name, module, quick=not args.thorough):
            print(f"   {row.result:<8} {row.property} / {row.operation} ({row.method})",
                  file=sys.stderr, flush=True)
            rows.append(row)
    print(render(rows))
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    for r in failed:
        print(f"FAILED: {r.property} / {r.operation} ({r.method}): {r.detail}")
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
