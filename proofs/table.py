"""The rows of the `make verify` table: what every proof stage yields, and how they print.

The driver (`pagefs/verify.py`) sits above both proofs and conformance; the stages below
it share this one row type so the table reads the same whichever layer a check lives in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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


def render(rows: Iterable[Row]) -> str:
    """Format rows as a fixed-width table, one row per check. The last column says how
    much each check covered (programs enumerated, conditions confirmed or not, judged
    steps, ...): a verdict without it would claim more than it shows."""
    headers = ("property", "operation", "method", "result", "time", "checked")
    cells = [(r.property, r.operation, r.method, r.result + ("" if r.ok else " ✗"),
              f"{r.seconds:.2f}s", " | ".join(r.detail.splitlines()) or "-") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"  # 'checked' unpadded
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*c) for c in cells]
    return "\n".join(out)
