"""Verdicts, one per named property, and their Markdown and JSON reports."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

PASS, FAIL, NA, ERROR = "pass", "FAIL", "n/a", "ERROR"
# Applicable, no departure seen, but not judged enough to say it holds: cases were cut
# short (by another property's departure) before they judged it, or no step judged it.
INCONCLUSIVE = "inconclusive"
REPORT_VERSION = 2
# Worst first: how verdicts of one property on several seeds combine.
SEVERITY = (ERROR, FAIL, INCONCLUSIVE, PASS, NA)


@dataclass
class Verdict:
    """The suite's answer for one property on one target."""

    property: str
    family: str
    result: str  # PASS, FAIL, INCONCLUSIVE, NA or ERROR
    detail: str = ""  # n/a: why; FAIL: the first line of the departure
    trace: list[str] = field(default_factory=list)  # FAIL: the shortest trace found
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    judged: int = 0  # steps checked against the spec while a case still judged this property
    cut: int = 0  # cases cut short by another property's departure before they ended

    @builtins.property  # (the field `property` shadows the builtin in this body)
    def ok(self) -> bool:
        """Nothing found against it, and judged wherever it applies."""
        return self.result in (PASS, NA)

    @builtins.property
    def failed(self) -> bool:
        return self.result in (FAIL, ERROR)


@dataclass
class Report:
    target: str
    seed: int
    examples: int
    verdicts: list[Verdict]
    version: int = REPORT_VERSION
    seeds: list[int] = field(default_factory=list)  # every seed run (default: [seed])

    def __post_init__(self) -> None:
        self.seeds = self.seeds or [self.seed]

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.failed]

    @property
    def inconclusive(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.result == INCONCLUSIVE]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Report:
        raw = json.loads(text)
        raw["verdicts"] = [Verdict(**v) for v in raw["verdicts"]]  # older: no judged/cut
        return cls(**raw)

    def table(self) -> str:
        """A plain-text table for the terminal."""
        rows = [(v.property, v.family, v.result, str(v.judged), _short(v))
                for v in self.verdicts]
        heads = ("property", "family", "result", "judged", "detail")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in
                  enumerate(heads)] if rows else [8] * 5
        line = "  ".join(f"{{:<{w}}}" for w in widths[:4]) + "  {}"
        out = [line.format(*heads)]
        out += [line.format(*r) for r in rows]
        return "\n".join(out)

    def to_markdown(self) -> str:
        n_pass = sum(v.result == PASS for v in self.verdicts)
        n_na = sum(v.result == NA for v in self.verdicts)
        out = [f"# Conformance of `{self.target}`", "",
               f"{_seeds(self.seeds)}, up to {self.examples} examples per property and seed. "
               f"{n_pass} pass, {len(self.failed)} fail, {len(self.inconclusive)} "
               f"inconclusive, {n_na} not applicable. Judged steps: the steps checked "
               "against the spec while a case still judged the property; cut: cases "
               "ended early by another property's departure (reported under that one).", "",
               "| property | family | result | examples | judged steps | cut | detail |",
               "|---|---|---|---|---|---|---|"]
        for v in self.verdicts:
            out.append(f"| {v.property} | {v.family} | {_cell(v)} | {v.examples} | "
                       f"{v.judged} | {v.cut} | {_short(v).replace('|', '/')} |")
        for v in self.verdicts:
            if v.trace:
                out += ["", f"## {v.property}: shortest failing trace", "", "```",
                        *v.trace, "```"]
        return "\n".join(out) + "\n"


def _seeds(seeds: Sequence[int]) -> str:
    return f"Seed {seeds[0]}" if len(seeds) == 1 else \
        "Seeds " + ", ".join(str(s) for s in seeds)


def _cell(v: Verdict) -> str:
    return {PASS: "pass", FAIL: "**FAIL**", NA: "n/a", ERROR: "**ERROR**",
            INCONCLUSIVE: "inconclusive"}[v.result]


def _cell_judged(v: Verdict) -> str:
    """A matrix cell: the verdict and, where it applies, the steps that judged it."""
    return _cell(v) if v.result == NA else f"{_cell(v)} ({v.judged})"


def combine(reports: Sequence[Report]) -> Report:
    """One target's runs on several seeds as one report: per property the worst verdict
    (error, fail, inconclusive, pass), with judged steps, cases and cuts summed."""
    first = reports[0]
    verdicts = []
    for p in [v.property for v in first.verdicts]:
        runs = [v for r in reports for v in r.verdicts if v.property == p]
        worst = min(runs, key=lambda v: SEVERITY.index(v.result))
        verdicts.append(Verdict(
            p, worst.family, worst.result, worst.detail, worst.trace,
            sum(v.examples for v in runs), worst.steps, round(sum(v.seconds for v in runs), 2),
            sum(v.judged for v in runs), sum(v.cut for v in runs)))
    return Report(first.target, first.seed, first.examples, verdicts,
                  seeds=[s for r in reports for s in r.seeds])


def seeds_markdown(reports: Sequence[Report]) -> str:
    """One target's runs, one row per seed: each property's verdict with its judged steps,
    then each failing seed's departing step (its whole trace follows)."""
    first = reports[0]
    props = [v.property for v in first.verdicts]
    clean = sum(all(v.result in (PASS, NA) for v in r.verdicts) for r in reports)
    out = [f"# `{first.target}` seed by seed", "",
           f"{len(reports)} seeds, up to {first.examples} examples per property and seed; "
           f"{clean} of {len(reports)} seeds with every applicable property passed. A cell "
           "is the verdict with the steps that judged the property in parentheses (n/a: "
           "the target cannot exercise it; inconclusive: cases cut short before judging).",
           "", "| seed | " + " | ".join(props) + " | judged steps |",
           "|---|" + "---|" * (len(props) + 1)]
    for r in reports:
        cells = [_cell_judged(v) for v in r.verdicts]
        out.append(f"| {r.seed} | " + " | ".join(cells) +
                   f" | {sum(v.judged for v in r.verdicts)} |")
    for r in reports:
        for v in r.verdicts:
            if v.trace:
                out += ["", f"## seed {r.seed}, {v.property}", "", "```", *v.trace, "```"]
    return "\n".join(out) + "\n"


def _short(v: Verdict) -> str:
    return v.detail.splitlines()[0] if v.detail else ""


def matrix_markdown(reports: Sequence[Report], properties: Iterable[str]) -> str:
    """One row per property, one column per target (each cell: the verdict and, in
    parentheses, its judged steps); then each failure's departing step."""
    names = [r.target for r in reports]
    by = {(r.target, v.property): v for r in reports for v in r.verdicts}
    out = ["| property | " + " | ".join(f"`{n}`" for n in names) + " |",
           "|---|" + "---|" * len(names)]
    for p in properties:
        cells = [_cell_judged(by[(n, p)]) if (n, p) in by else "" for n in names]
        out.append(f"| {p} | " + " | ".join(cells) + " |")
    failures = [(r.target, v) for r in reports for v in r.verdicts if v.failed]
    if failures:
        out += ["", "Where each failure departs (the last step of its shortest trace; the "
                "whole trace is in the target's report):", ""]
        out += [f"- `{target}` {v.property}: `{_short(v)}`" for target, v in failures]
    return "\n".join(out) + "\n"
