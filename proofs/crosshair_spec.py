"""`make verify` stage: CrossHair over every contract of the spec, one row per module.

Each spec module is checked by `crosshair check --report_all` with explicit budgets (a
CPU-time limit per condition; CrossHair's own defaults are unbounded), the per-condition
report is parsed, and the number of conditions CrossHair reported is compared with the
number of `post:` conditions the module's docstrings declare, so no contract goes
unchecked silently. A row never says a bare "pass": it counts the conditions CrossHair
*confirmed* on all paths, those *not confirmed within the budget* (no counterexample
found, nothing proved), and those *refuted*. A counterexample, an error, or a condition
CrossHair could not exercise ("unable to meet precondition") fails the row.

What a budget is worth is measured, not assumed: each module has a seeded-bug contract
(`crosshair_seeded.py`) checked in the same run with the same budget, and a row whose
seeded bug is not refuted fails: the budget is too small to find a bug of that depth.
Modules whose seeded bug needs more than the quick budget get their own (`DEEPER`).
The operation contracts CrossHair leaves unconfirmed are evaluated on every program of
the exhaustive check's bound (`enumeration.py`); the rows of those modules say so.
`State` arguments come from `proofs/crosshair_plugin.py`: a family of reachable states,
edge cases included, picked by a symbolic index, while every other argument is symbolic.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from pagefs.proofs.table import Row
from pagefs.spec.datatypes import O_RDWR, Config, State, initial_state
from pagefs.spec.registry import REGISTRY

SYMBOLIC_CONFIG = Config(page_size=4, range_size=8, window_ranges=2, guests=2, name_max=4)
"""4-byte pages, 2-page ranges, 2-range windows: every edge within a few bytes."""

SPEC_MODULES = ("caching", "rules", "times", "tree", "guests", "session", "namespace", "files",
                "mappings", "memory", "host", "special")
"""The spec modules that carry contracts, cheapest first."""

PLUGIN = Path(__file__).with_name("crosshair_plugin.py")

QUICK_SECONDS = 0.75
THOROUGH_SECONDS = 8.0
DEEPER = {"tree": 5.0, "memory": 7.0, "mappings": 15.0}
"""Per-condition CPU budgets of the modules whose seeded bug the quick budget misses.
Measured CPU seconds to refute it on the shared 2-core machine: tree ~2.5, memory ~3.5,
mappings ~9 (a successful SETUPMAPPING needs a handle, an aligned range and read
access at once); each budget is about 1.5-2 times that."""
WORKERS = 2
SEEDED_MODULE = "pagefs.proofs.crosshair_seeded"

_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<level>info|error|warning): (?P<text>.*)$")


EDGE_SCRIPTS: tuple[tuple[tuple[str, tuple[object, ...]], ...], ...] = (
    (),
    (("host.create", (b"a", 0o644)), ("host.write", (b"a", 0, b"abcdef")),
     ("host.mkdir", (b"d", 0o755)), ("host.symlink", (b"../x", b"d/l")),
     ("host.mkfifo", (b"p", 0o644)),
     ("LOOKUP", (0, 1, b"a")), ("LOOKUP", (0, 1, b"d")), ("LOOKUP", (0, 1, b"p")),
     ("OPEN", (0, 2, O_RDWR)), ("OPENDIR", (0, 3)),
     ("SETUPMAPPING", (0, 1, 0, 8, True, 0)),
     ("LOOKUP", (1, 1, b"a")), ("OPEN", (1, 2, 0)), ("SETUPMAPPING", (1, 1, 0, 8, False, 8))),
)
"""Hand-made states at the edges: a partial last page, a symlink pointing outside, a
FIFO, two guests mapping one file (one writable, one read-only)."""

EDGE_FOLLOW_UPS: tuple[tuple[tuple[str, tuple[object, ...]], ...], ...] = (
    (("host.truncate", (b"a", 0)),),
    (("host.unlink", (b"a",)),),
    (("STORE", (0, 6, b"zz")),),
    (("RELEASE", (0, 1)), ("FORGET", (0, 2, 1))),
    (("DESTROY", (1,)),),
    (("host.truncate", (b"a", 13)), ("SETUPMAPPING", (0, 1, 8, 8, True, 8))),
)
"""Steps applied to the second edge state: truncation under a mapping, unlink of an
open and mapped file, a store into the tail past end of file, a released handle and a
forgotten nodeid, a guest gone, a mapping wholly beyond end of file."""

FAMILY_WALKS = 12


def _run(state: State, script: tuple[tuple[str, tuple[object, ...]], ...]) -> State:
    for name, args in script:
        state = REGISTRY[name](state, *args)[0].state
    return state


@cache
def state_family() -> tuple[State, ...]:
    """The concrete states CrossHair draws `State` arguments from: the edge states above,
    each also in a read-only export, and states reached by seeded random walks. Names,
    offsets, data and every other argument stay symbolic."""
    from pagefs.spec.explore import walk

    family: list[State] = []
    for read_only in (False, True):
        config = replace(SYMBOLIC_CONFIG, read_only=read_only)
        base = _run(initial_state(config), EDGE_SCRIPTS[1])
        family.append(initial_state(config))
        family.append(base)
        family += [_run(base, follow) for follow in EDGE_FOLLOW_UPS]
    for state, *_ in walk(SYMBOLIC_CONFIG, walks=FAMILY_WALKS, steps=12, seed=7):
        family.append(state)
    return tuple(dict.fromkeys(family))


def declared_conditions(module: ModuleType) -> int:
    """How many `post:` conditions the module's functions and methods declare."""
    count = 0
    for _, obj in inspect.getmembers(module):
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        functions = [obj] if inspect.isfunction(obj) else (
            [m for _, m in inspect.getmembers(obj, inspect.isfunction)]
            if inspect.isclass(obj) else [])
        for function in functions:
            doc = inspect.getdoc(function) or ""
            count += sum(1 for line in doc.splitlines() if line.strip().startswith("post"))
    return count


@dataclass(frozen=True)
class ModuleReport:
    """What CrossHair said about one module's conditions."""

    target: str
    confirmed: int  # proved on all paths
    unrefuted: int  # no counterexample within the budget
    unmet: int  # no input met the preconditions: the condition was not exercised
    errors: tuple[str, ...]  # counterexamples and crashes, one line each
    seconds: float
    returncode: int
    seeded: str = "not run"  # the module's seeded-bug contract: "refuted" or why not

    @property
    def reported(self) -> int:
        return self.confirmed + self.unrefuted + self.unmet + len(self.errors)


def parse(output: str) -> dict[str, tuple[int, int, int, tuple[str, ...]]]:
    """Count CrossHair's per-condition lines by source file (its stem, e.g. "rules"):
    confirmed, unrefuted, unmet, and the error lines."""
    counts: dict[str, list[Any]] = {}  # [confirmed, unrefuted, unmet, [error lines]]
    for line in output.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        entry = counts.setdefault(Path(match["file"]).stem, [0, 0, 0, []])
        text = match["text"]
        if match["level"] == "error":
            entry[3].append(f"line {match['line']}: {text}")
        elif text.startswith("Confirmed"):
            entry[0] += 1
        elif text.startswith("Not confirmed"):
            entry[1] += 1
        elif text.startswith("Unable to meet precondition"):
            entry[2] += 1
    return {stem: (c, u, m, tuple(e)) for stem, (c, u, m, e) in counts.items()}


def _stem(target: str) -> str:
    return Path(target).stem if target.endswith(".py") else target.rsplit(".", 1)[-1]


def seeded_verdicts(output: str) -> dict[str, str]:
    """The verdict on each seeded-bug contract in CrossHair's output, by spec module."""
    from pagefs.proofs import crosshair_seeded

    owners: dict[int, str] = {}
    for module, function in crosshair_seeded.SEEDED.items():
        lines, first = inspect.getsourcelines(getattr(crosshair_seeded, function))
        owners.update((n, module) for n in range(first, first + len(lines)))
    verdicts: dict[str, str] = {}
    for line in output.splitlines():
        match = _LINE.match(line.strip())
        if not match or Path(match["file"]).stem != "crosshair_seeded":
            continue
        owner = owners.get(int(match["line"]))
        if owner is None:
            continue
        text = match["text"]
        verdicts[owner] = ("refuted" if match["level"] == "error" and "false when" in text
                            else "not refuted within the budget" if text.startswith("Not conf")
                            else text[:60])
    return verdicts


def check_modules(targets: list[str], seconds: float, seeded: tuple[str, ...] = ()
                  ) -> dict[str, ModuleReport]:
    """Run one `crosshair check` over several modules (dotted names or files) with a
    per-condition CPU budget, and parse its report into one report per module. Time is
    shared out by the number of conditions each module had. ``seeded`` names spec
    modules whose seeded-bug contract runs in the same process, with the same budget."""
    crosshair = Path(sys.executable).with_name("crosshair")
    from pagefs.proofs.crosshair_seeded import SEEDED

    probes = [f"{SEEDED_MODULE}.{SEEDED[name]}" for name in seeded]
    command = [str(crosshair), "check", "--report_all",
               f"--per_condition_timeout={seconds}", f"--per_path_timeout={max(seconds / 2, 0.5)}",
               *targets, *probes, "--extra_plugin", str(PLUGIN)]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    elapsed = time.monotonic() - start
    counts = parse(done.stdout + done.stderr)
    counts.pop("crosshair_seeded", None)
    verdicts = seeded_verdicts(done.stdout + done.stderr)
    crashed: tuple[str, ...] = ()
    if done.returncode not in (0, 1):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        crashed = (f"crosshair exited {done.returncode}: {tail}",)
    total = sum(c + u + m + len(e) for c, u, m, e in counts.values()) or 1
    reports = {}
    for target in targets:
        confirmed, unrefuted, unmet, errors = counts.get(_stem(target), (0, 0, 0, ()))
        share = (confirmed + unrefuted + unmet + len(errors)) / total
        reports[_stem(target)] = ModuleReport(
            target, confirmed, unrefuted, unmet, errors or crashed, elapsed * share,
            done.returncode, verdicts.get(_stem(target), "not reported") if _stem(target)
            in seeded else "not run")
    return reports


def check_module(target: str, seconds: float) -> ModuleReport:
    """`check_modules` for one module."""
    return check_modules([target], seconds)[_stem(target)]


def row_for(name: str, report: ModuleReport, declared: int, seconds: float,
            exhaustive: str = "") -> Row:
    """One verify row, counting confirmed / not confirmed within the budget / refuted. It
    holds only when every declared condition was reported, none was refuted or went
    unexercised, and the module's seeded bug was refuted with the same budget.
    ``exhaustive`` says where the conditions left unconfirmed are judged instead."""
    refuted = len(report.errors)
    ok = (not report.errors and not report.unmet and report.reported >= declared
          and report.seeded == "refuted")
    detail = (f"{report.reported}/{declared} conditions: {report.confirmed} confirmed on all "
              f"paths, {report.unrefuted} not confirmed within {seconds:g}s CPU each "
              f"(no counterexample), {refuted} refuted")
    if report.unmet:
        detail += f", {report.unmet} never exercised (precondition unmet)"
    if report.reported < declared:
        detail += f", {declared - report.reported} not reported"
    detail += f"; seeded bug {report.seeded}"
    if report.unrefuted and exhaustive:
        detail += f"; {exhaustive}"
    if report.errors:
        detail = report.errors[0] + f" (+{len(report.errors) - 1} more)" * (len(report.errors) > 1)
    if refuted:
        result = f"{refuted} refuted"
    elif report.reported and report.confirmed == report.reported:
        result = "all confirmed"
    else:
        result = f"{report.confirmed}/{report.reported} confirmed"
    return Row("contracts", f"spec.{name}", f"CrossHair {seconds:g}s/condition", result,
               ok, report.seconds, detail)


def budget(name: str, quick: bool) -> float:
    """The per-condition CPU budget for one spec module."""
    return max(QUICK_SECONDS if quick else THOROUGH_SECONDS, DEEPER.get(name, 0.0))


def _groups(declared: dict[str, int], count: int) -> list[list[str]]:
    """Split modules into `count` groups of about equal numbers of conditions."""
    groups: list[list[str]] = [[] for _ in range(count)]
    loads = [0] * count
    for name in sorted(declared, key=lambda n: declared[n], reverse=True):
        lightest = loads.index(min(loads))
        groups[lightest].append(name)
        loads[lightest] += declared[name]
    return [g for g in groups if g]


def _jobs(declared: dict[str, int], quick: bool) -> list[tuple[float, list[str]]]:
    """CrossHair processes to run: the modules sharing the base budget split in two, and
    one process per deeper budget."""
    base = {n: c for n, c in declared.items() if budget(n, quick) == budget("", quick)}
    jobs = [(budget("", quick), group) for group in _groups(base, WORKERS)]
    for seconds in sorted({budget(n, quick) for n in declared} - {budget("", quick)}):
        jobs.append((seconds, [n for n in declared if budget(n, quick) == seconds]))
    return jobs


def exhaustive_note(name: str, quick: bool) -> str:
    """Which of the module's operations have their contracts evaluated on every program of
    the exhaustive checks (``enumeration.py``)."""
    from pagefs.proofs import enumeration

    ops = sorted(op for op in enumeration.contract_operations()
                 if REGISTRY[op].function.__module__ == f"pagefs.spec.{name}")
    if not ops:
        return ""
    k = enumeration.CONTRACTS_K_QUICK if quick else enumeration.CONTRACTS_K_THOROUGH
    return f"the contracts of {', '.join(ops)} are evaluated on every program of up to {k} " \
           f"calls instead (row 'contracts / every operation')"


def rows(quick: bool = True) -> Iterable[Row]:
    """Check every spec module, in CrossHair processes two at a time (one start-up each,
    not one per module), and yield a row per module."""
    import importlib

    declared = {name: declared_conditions(importlib.import_module(f"pagefs.spec.{name}"))
                for name in SPEC_MODULES}
    jobs = _jobs(declared, quick)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = pool.map(lambda job: check_modules(
            [f"pagefs.spec.{name}" for name in job[1]], job[0], tuple(job[1])), jobs)
        reports = {name: report for result in results for name, report in result.items()}
    for name in SPEC_MODULES:
        yield row_for(name, reports[name], declared[name], budget(name, quick),
                      exhaustive_note(name, quick))
