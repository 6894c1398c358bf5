"""Running the families against one target: a verdict for every named property.

For each property: not applicable if the target lacks a capability its family needs
(the factory says why); otherwise its family's machine runs with that property in focus
for up to `examples` test cases under a fixed seed, and any departure attributed to it
is shrunk by hypothesis to the shortest trace found.

A pass means judged and held: a property whose cases were cut short by another
property's departure, or that no step judged, is inconclusive. A departure met while
judging one property is reported under the property it breaks (`Met`), so a property
whose own run happened not to meet it still fails.
"""

from __future__ import annotations

import os
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import hypothesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky, FlakyStrategyDefinition
from hypothesis.internal.cache import LRUCache
from hypothesis.internal.conjecture import engine as _engine
from hypothesis.internal.conjecture import providers
from hypothesis.internal.constants_ast import Constants
from hypothesis.stateful import get_state_machine_test

from pagefs.conformance.families import NOT_EXERCISED, PARTS, family_of
from pagefs.conformance.machines import Departure, machine_for
from pagefs.conformance.progress import Progress
from pagefs.conformance.report import (
    ERROR,
    FAIL,
    INCONCLUSIVE,
    NA,
    PASS,
    Report,
    Verdict,
)
from pagefs.conformance.target import TargetFactory
from pagefs.spec.properties import PROPERTIES

ALL = tuple(p.name for p in PROPERTIES)


@dataclass(frozen=True)
class Met:
    """A departure attributed to `properties`, met in the run judging `while_judging`."""

    properties: frozenset[str]
    trace: tuple[str, ...]
    while_judging: str


def _settings(examples: int, steps: int) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                    database=None, derandomize=False, print_blob=False,
                    report_multiple_bugs=False, verbosity=hypothesis.Verbosity.quiet,
                    phases=(Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))


@contextmanager
def seeded_run() -> Iterator[None]:
    """Make a seeded run depend on the seed alone. Hypothesis mixes constants from every
    local module the process has imported into what it draws (and caches them at first
    use), so one seed gave different cases in a fresh command and in a test process that
    had imported more; hypothesis has no public switch for it, hence its provider's
    internals."""
    saved = providers._get_local_constants, providers.CONSTANTS_CACHE
    providers._get_local_constants = Constants
    providers.CONSTANTS_CACHE = LRUCache(1024)
    try:
        yield
    finally:
        providers._get_local_constants, providers.CONSTANTS_CACHE = saved


@contextmanager
def _shrink_budget(seconds: float) -> Iterator[None]:
    """Bound the time hypothesis spends shrinking one failure. Every case starts a target
    (a daemon, for some), so the default five minutes per property is too long for a
    matrix; hypothesis has no public setting for it, hence its engine constant."""
    saved = getattr(_engine, "MAX_SHRINKING_SECONDS", None)
    if saved is None:
        yield
        return
    _engine.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]  # (a float works)
    try:
        yield
    finally:
        _engine.MAX_SHRINKING_SECONDS = saved


def judge(factory: TargetFactory, prop: str, *, examples: int, steps: int, seed: int,
          progress: Progress | None = None, shrink_seconds: float = 60.0,
          met: list[Met] | None = None) -> Verdict:
    """The verdict for one property; departures its cases met on other properties are
    appended to `met`."""
    family = family_of(prop)
    if family is None:
        return Verdict(prop, "-", NA, NOT_EXERCISED.get(prop, "not exercised"))
    missing = sorted(family.needs[prop] - factory.capabilities)
    if missing:
        return Verdict(prop, family.name, NA, "; ".join(factory.why_not(c) for c in missing))
    counts = {"examples": 0, "judged": 0, "cut": 0}
    departures: list[Departure] = []
    stopped: Counter[str] = Counter()

    def on_example() -> None:
        counts["examples"] += 1
        if progress:
            progress.example()

    first_line: dict[str, str] = {}

    def on_diverge(props: set[str], trace: list[str]) -> None:
        counts["cut"] += 1
        stopped.update(props)
        for p in props:
            first_line.setdefault(p, trace[-1].strip())
        if met is not None:
            met.append(Met(frozenset(props), tuple(trace), prop))

    def on_judged() -> None:
        counts["judged"] += 1

    machine = machine_for(factory, family, prop, on_example=on_example,
                          on_departure=departures.append, on_diverge=on_diverge,
                          on_judged=on_judged)
    test = get_state_machine_test(machine, settings=_settings(examples, steps))
    test = hypothesis.seed(seed)(test)  # same seed, same run
    start = time.monotonic()
    verdict = Verdict(prop, family.name, PASS)
    try:
        with _shrink_budget(shrink_seconds), seeded_run():
            test()
    except (Departure, Flaky, FlakyStrategyDefinition) as exc:
        # The shortest departure seen is the trace to show; hypothesis has shrunk toward it
        # (a target whose caches expire in real time may not replay exactly: Flaky).
        best = min(departures, key=lambda d: len(d.trace)) if departures else None
        if best is None:  # flaky without a departure of this property: say so, no verdict
            verdict = Verdict(prop, family.name, ERROR,
                              "the target answered differently when a case was replayed "
                              f"(nondeterministic): {str(exc).splitlines()[0]}")
        else:
            verdict = Verdict(prop, family.name, FAIL, best.trace[-1].strip(), best.trace)
    except Exception as exc:  # a broken target or harness is an error, not a verdict
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" (at {os.path.relpath(where.filename)}:{where.lineno})" if where else ""
        verdict = Verdict(prop, family.name, ERROR, f"{type(exc).__name__}: {exc}{at}")
    verdict.examples, verdict.judged, verdict.cut = \
        counts["examples"], counts["judged"], counts["cut"]
    if verdict.result == PASS and (stopped or not verdict.judged):
        # A pass is "judged and held": cases that stopped judging at another property's
        # departure leave this one unjudged in them.
        verdict.result = INCONCLUSIVE
        if stopped:
            common = stopped.most_common()
            verdict.detail = (f"{counts['cut']} of {counts['examples']} cases cut short at "
                              "departures on " + ", ".join(f"{p} ({n}x)" for p, n in common) +
                              f"; e.g. {first_line[common[0][0]]}")
        else:
            verdict.detail = "no step judged it"
    for capability, part in PARTS.get(prop, ()):
        if capability not in factory.capabilities:
            note = f"not judged here: {part}: n/a ({factory.why_not(capability)})"
            verdict.detail = f"{verdict.detail}; {note}" if verdict.detail else note
    verdict.seconds = round(time.monotonic() - start, 2)
    return verdict


def run(factory: TargetFactory, properties: Iterable[str] = ALL, *, examples: int = 50,
        steps: int = 25, seed: int = 0, target_name: str | None = None,
        show_progress: bool = True, shrink_seconds: float = 60.0) -> Report:
    """Judge every property in `properties` on the target `factory` makes."""
    props = list(properties)
    unknown = [p for p in props if p not in ALL]
    if unknown:
        raise ValueError(f"unknown properties: {', '.join(unknown)}; known: {', '.join(ALL)}")
    name = target_name or factory.name
    progress = Progress(len(props), name) if show_progress else None
    verdicts = []
    met: list[Met] = []
    for prop in props:
        if progress:
            progress.start(prop)
        verdict = judge(factory, prop, examples=examples, steps=steps, seed=seed,
                        progress=progress, shrink_seconds=shrink_seconds, met=met)
        if progress:
            progress.finish(prop, verdict.result)
        verdicts.append(verdict)
    report_where_met(verdicts, met)
    return Report(name, seed, examples, verdicts)


def report_where_met(verdicts: list[Verdict], met: list[Met]) -> None:
    """A departure met while judging X fails the property it breaks, even when that
    property's own run did not meet it (its trace is then the unshrunk one met)."""
    by = {v.property: v for v in verdicts}
    for m in sorted(met, key=lambda m: len(m.trace)):
        for p in sorted(m.properties):
            v = by.get(p)
            if v is None or v.result not in (PASS, INCONCLUSIVE):
                continue
            v.result, v.trace = FAIL, list(m.trace)
            v.detail = f"{m.trace[-1].strip()} (met while judging {m.while_judging})"
