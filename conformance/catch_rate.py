"""How many seeded implementation bugs the suite catches, layer by layer.

Every seeded bug the project keeps, each run against the property family it belongs to
(or measured, or run concurrently) on a real target with that one bug:

- target faults (`faults.py`): a guest of a real target that misbehaves in one way;
- measured faults (`measured.py`): SINGLE-COPY and DURABLE's own measurements;
- guest driver (`driver_faults.py`): the real driver with one method wrong, via pagefs-api;
- host daemon (`host_faults.py`): pagefs-host with one method wrong, via the pagefs target;
- concurrency (`concurrent.torn_writes`): guest writes torn in two, histories checked.

A bug is caught when some property fails (its own, or another: both are counted).

    python -m pagefs.conformance.catch_rate [--out reports/catch-rate.md]
    python -m pagefs.conformance.catch_rate --out reports/catch-rate.md --only BUG ...
        (rerun those bugs; every other row is kept as the report has it)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass

from pagefs.conformance import concurrent, targets
from pagefs.conformance.driver_faults import DRIVER_FAULTS, broken_api
from pagefs.conformance.families import family_of
from pagefs.conformance.faults import BREAKS, FAULTS, MEASURED_FAULTS, ON_PAGEFS, inject
from pagefs.conformance.host_faults import HOST_FAULTS, broken_host
from pagefs.conformance.measured import measured_fault
from pagefs.conformance.report import FAIL
from pagefs.conformance.runner import run
from pagefs.conformance.target import TargetFactory

BUDGET = {"examples": 20, "steps": 20, "seed": 0, "shrink_seconds": 5.0,
          "show_progress": False}
DRIVER_DATA = ["COH-READ", "COH-WRITE", "EOF-FAULT", "ISOLATION", "COH-PEER", "LIFETIME"]
ANY_DATA = "a data property"
TORN_WRITES = "torn-writes"


@dataclass
class Caught:
    layer: str
    bug: str
    target: str
    expected: str  # the property the bug should fail
    judged_by: str  # what was run
    failed: set[str]
    seconds: float

    @property
    def caught(self) -> bool:
        return bool(self.failed)

    @property
    def by_its_own(self) -> bool:
        """Failed a property it breaks (any data property, for a driver bug)."""
        own = set(DRIVER_DATA) if self.expected == ANY_DATA else {self.expected}
        return bool(self.failed & own)


def _family(prop: str) -> list[str]:
    family = family_of(prop)
    props = list(family.properties) if family else [prop]
    # RECLAIM's cases wait for the daemon's cleanup: asked only where it is the point.
    return [p for p in props if p != "RECLAIM" or prop == "RECLAIM"]


Maker = Callable[[contextlib.ExitStack], TargetFactory]


def _stepped(layer: str, bug: str, make: Maker, expected: str, props: list[str]) -> Caught:
    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        factory = make(stack)
        report = run(factory, props, **BUDGET)  # type: ignore[arg-type]
    failed = {v.property for v in report.verdicts if v.result == FAIL}
    return Caught(layer, bug, factory.name, expected, ", ".join(props), failed,
                  time.monotonic() - start)


def _target_fault(fault: str) -> Maker:
    base = "pagefs" if fault in ON_PAGEFS else "local"
    return lambda stack: inject(stack.enter_context(targets.factory(base)), fault)


def _entering(factory: TargetFactory) -> Maker:
    return lambda stack: stack.enter_context(factory)


def all_bugs(only: Container[str] | None = None) -> Iterator[Caught]:
    """Each seeded bug's row (of those named in `only`, if given), run in turn."""
    def wanted(bug: str) -> bool:
        return only is None or bug in only

    for fault in FAULTS:
        if wanted(fault):
            prop = BREAKS[fault]
            yield _stepped("target", fault, _target_fault(fault), prop, _family(prop))
    for fault, prop in MEASURED_FAULTS.items():
        if wanted(fault):
            start = time.monotonic()
            v = measured_fault(fault)
            yield Caught("measured", fault, "pagefs", prop, "its measurement",
                         {prop} if v.result == FAIL else set(), time.monotonic() - start)
    for fault in DRIVER_FAULTS:
        if wanted(fault):
            yield _stepped("guest driver", fault, _entering(broken_api(fault)),
                           ANY_DATA, DRIVER_DATA)
    for fault, (_method, _broken, prop) in HOST_FAULTS.items():
        if wanted(fault):
            yield _stepped("host daemon", fault, _entering(broken_host(fault)), prop,
                           _family(prop))
    if wanted(TORN_WRITES):
        start = time.monotonic()
        with targets.factory("pagefs") as base:
            result = concurrent.check(concurrent.torn_writes(base), rounds=20, seed=0)
        yield Caught("concurrency", TORN_WRITES, result.target, "linearizability",
                     "20 concurrent rounds",
                     {"linearizability"} if result.violations else set(),
                     time.monotonic() - start)


def bug_names() -> list[str]:
    return [*FAULTS, *MEASURED_FAULTS, *DRIVER_FAULTS, *HOST_FAULTS, TORN_WRITES]


def rerun_in(text: str) -> list[str]:
    """The bugs a report says were rerun alone after its whole run."""
    line = next((x for x in text.splitlines() if x.startswith(RERUN)), "")
    return [part.split("`")[1] for part in line.removeprefix(RERUN).split(", ") if "`" in part]


def from_markdown(text: str) -> list[Caught]:
    """The rows of a report to_markdown wrote (to rerun some bugs and keep the rest)."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 8 or not cells[1].startswith("`"):
            continue
        layer, bug, target, expected, judged_by, failed, _caught, seconds = cells
        rows.append(Caught(layer, bug.strip("`"), target.strip("`"), expected, judged_by,
                           set() if failed == "-" else set(failed.split(", ")),
                           float(seconds.removesuffix(" s"))))
    return rows


RERUN = "Rerun alone after the last whole run (`--only`): "


def to_markdown(rows: list[Caught], rerun: list[str] | None = None) -> str:
    """The report; `rerun`: the bugs whose rows are newer than the last whole run."""
    caught = sum(r.caught for r in rows)
    own = sum(r.by_its_own for r in rows)
    out = ["# Catch rate of seeded implementation bugs", "",
           f"{caught} of {len(rows)} seeded bugs caught ({own} by the property they break); "
           f"each run on a real target with that one bug, up to {BUDGET['examples']} cases "
           f"of {BUDGET['steps']} steps per property, seed {BUDGET['seed']} "
           "(`python -m pagefs.conformance.catch_rate`).", ""]
    if rerun:
        out += [RERUN + ", ".join(f"`{bug}`" for bug in rerun) + "; every other row is "
                "as that run gave it.", ""]
    for layer in dict.fromkeys(r.layer for r in rows):
        mine = [r for r in rows if r.layer == layer]
        out.append(f"- {layer}: {sum(r.caught for r in mine)} of {len(mine)}")
    out += ["", "| layer | seeded bug | target | breaks | judged by | failed | caught | time |",
            "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.layer} | `{r.bug}` | `{r.target}` | {r.expected} | {r.judged_by} | "
                   f"{', '.join(sorted(r.failed)) or '-'} | "
                   f"{'yes' if r.caught else '**missed**'} | {r.seconds:.0f} s |")
    return "\n".join(out) + "\n"


def merged(kept: list[Caught], fresh: list[Caught]) -> list[Caught]:
    """The report's rows with the rerun ones in their place, in the order a whole run
    gives (layer by layer); rows of bugs the project no longer keeps are dropped."""
    by_bug = {r.bug: r for r in kept} | {r.bug: r for r in fresh}
    return [by_bug[bug] for bug in bug_names() if bug in by_bug]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pagefs.conformance.catch_rate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the Markdown report here")
    parser.add_argument("--only", action="append", metavar="BUG",
                        help="run only this seeded bug (repeatable) and update its row in "
                             "the report --out names, which must exist")
    args = parser.parse_args(argv)
    kept: list[Caught] = []
    rerun: list[str] = []
    if args.only:
        unknown = sorted(set(args.only) - set(bug_names()))
        if unknown or not args.out:
            parser.error(f"unknown seeded bug {', '.join(unknown)}; known: "
                         f"{', '.join(bug_names())}" if unknown else "--only needs --out")
        try:
            with open(args.out) as f:
                text = f.read()
            kept, rerun = from_markdown(text), rerun_in(text)
        except OSError as exc:
            parser.error(f"cannot read the report to update: {exc}")
    rows = []
    for row in all_bugs(set(args.only) if args.only else None):
        print(f"{row.layer:13} {row.bug:22} {'caught' if row.caught else 'MISSED':7} "
              f"{', '.join(sorted(row.failed))}", file=sys.stderr, flush=True)
        rows.append(row)
    rows = merged(kept, rows)
    if args.only:
        rerun = [bug for bug in bug_names() if bug in {*rerun, *args.only}]
    text = to_markdown(rows, rerun)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return 0 if all(r.caught for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
