"""Verdicts, one per named property, and their Markdown and JSON reports."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

PASS, FAIL, NA, ERROR = "pass", "FAIL", "n/a", "ERROR"
REPORT_VERSION = 1


@dataclass
class Verdict:
    """The suite's answer for one property on one target."""

    property: str
    family: str
    result: str  # PASS, FAIL, NA or ERROR
    detail: str = ""  # n/a: why; FAIL: the first line of the departure
    trace: list[str] = field(default_factory=list)  # FAIL: the shortest trace found
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0

    @builtins.property  # (the field `property` shadows the builtin in this body)
    def ok(self) -> bool:
        return self.result in (PASS, NA)


@dataclass
class Report:
    target: str
    seed: int
    examples: int
    verdicts: list[Verdict]
    version: int = REPORT_VERSION

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.ok]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Report:
        raw = json.loads(text)
        raw["verdicts"] = [Verdict(**v) for v in raw["verdicts"]]
        return cls(**raw)

    def table(self) -> str:
        """A plain-text table for the terminal."""
        rows = [(v.property, v.family, v.result, _short(v)) for v in self.verdicts]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in
                  enumerate(("property", "family", "result", "detail"))] if rows else [8] * 4
        line = "  ".join(f"{{:<{w}}}" for w in widths[:3]) + "  {}"
        out = [line.format("property", "family", "result", "detail")]
        out += [line.format(*r) for r in rows]
        return "\n".join(out)

    def to_markdown(self) -> str:
        n_pass = sum(v.result == PASS for v in self.verdicts)
        n_na = sum(v.result == NA for v in self.verdicts)
        out = [f"# Conformance of `{self.target}`", "",
               f"Seed {self.seed}, up to {self.examples} examples per property. "
               f"{n_pass} pass, {len(self.failed)} fail, {n_na} not applicable.", "",
               "| property | family | result | examples | detail |",
               "|---|---|---|---|---|"]
        for v in self.verdicts:
            out.append(f"| {v.property} | {v.family} | {_cell(v)} | {v.examples} | "
                       f"{_short(v).replace('|', '/')} |")
        for v in self.verdicts:
            if v.trace:
                out += ["", f"## {v.property}: shortest failing trace", "", "```",
                        *v.trace, "```"]
        return "\n".join(out) + "\n"


def _cell(v: Verdict) -> str:
    return {PASS: "pass", FAIL: "**FAIL**", NA: "n/a", ERROR: "**ERROR**"}[v.result]


def _short(v: Verdict) -> str:
    return v.detail.splitlines()[0] if v.detail else ""


def matrix_markdown(reports: Sequence[Report], properties: Iterable[str]) -> str:
    """One row per property, one column per target; then each failure's departing step."""
    names = [r.target for r in reports]
    by = {(r.target, v.property): v for r in reports for v in r.verdicts}
    out = ["| property | " + " | ".join(f"`{n}`" for n in names) + " |",
           "|---|" + "---|" * len(names)]
    for p in properties:
        cells = [_cell(by[(n, p)]) if (n, p) in by else "" for n in names]
        out.append(f"| {p} | " + " | ".join(cells) + " |")
    failures = [(r.target, v) for r in reports for v in r.verdicts if not v.ok]
    if failures:
        out += ["", "Where each failure departs (the last step of its shortest trace; the "
                "whole trace is in the target's report):", ""]
        out += [f"- `{target}` {v.property}: `{_short(v)}`" for target, v in failures]
    return "\n".join(out) + "\n"
