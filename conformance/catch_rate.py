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
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
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


def all_bugs() -> Iterator[Caught]:
    for fault in FAULTS:
        prop = BREAKS[fault]
        yield _stepped("target", fault, _target_fault(fault), prop, _family(prop))
    for fault, prop in MEASURED_FAULTS.items():
        start = time.monotonic()
        v = measured_fault(fault)
        yield Caught("measured", fault, "pagefs", prop, "its measurement",
                     {prop} if v.result == FAIL else set(), time.monotonic() - start)
    for fault in DRIVER_FAULTS:
        yield _stepped("guest driver", fault, _entering(broken_api(fault)),
                       ANY_DATA, DRIVER_DATA)
    for fault, (_method, _broken, prop) in HOST_FAULTS.items():
        yield _stepped("host daemon", fault, _entering(broken_host(fault)), prop,
                       _family(prop))
    start = time.monotonic()
    with targets.factory("pagefs") as base:
        result = concurrent.check(concurrent.torn_writes(base), rounds=20, seed=0)
    yield Caught("concurrency", "torn-writes", result.target, "linearizability",
                 "20 concurrent rounds", {"linearizability"} if result.violations else set(),
                 time.monotonic() - start)


def to_markdown(rows: list[Caught]) -> str:
    caught = sum(r.caught for r in rows)
    own = sum(r.by_its_own for r in rows)
    out = ["# Catch rate of seeded implementation bugs", "",
           f"{caught} of {len(rows)} seeded bugs caught ({own} by the property they break); "
           f"each run on a real target with that one bug, up to {BUDGET['examples']} cases "
           f"of {BUDGET['steps']} steps per property, seed {BUDGET['seed']} "
           "(`python -m pagefs.conformance.catch_rate`).", ""]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pagefs.conformance.catch_rate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the Markdown report here")
    args = parser.parse_args(argv)
    rows = []
    for row in all_bugs():
        print(f"{row.layer:13} {row.bug:22} {'caught' if row.caught else 'MISSED':7} "
              f"{', '.join(sorted(row.failed))}", file=sys.stderr, flush=True)
        rows.append(row)
    text = to_markdown(rows)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return 0 if all(r.caught for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
