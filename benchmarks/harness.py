"""What every benchmark command shares: runs, medians and ranges, ratio tables, load.

A benchmark is a list of `Case`s, one of them the baseline. `compare` measures every
case once per run, back to back and in the same order, so the ratio of a case to the
baseline is taken between figures measured under the same load; the table reports
the median over runs of each figure and of each ratio, with their ranges (min-max).
The machine is shared and noisy: only the ratios mean anything, and the load average
printed with each table says how noisy it was.

With `--out DIR` (see `add_output_argument`) a command also writes everything it printed,
with the raw samples and series behind the charts, to DIR/<command>.json, which
`benchmarks/report.py` turns into reports/bench/README.md and its charts.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from pagefs.impl.client.host_daemon import HostDaemonError
from pagefs.impl.client.virtiofsd import VirtiofsdError

_load_during_runs: list[float] = []  # 1-minute load average after each run
# What a command measured, for --out: its tables, raw samples and chart series.
_record: dict[str, Any] = {"tables": [], "samples": {}, "series": {}}


class MissingComponent(RuntimeError):
    """A component the benchmark needs (a binary, a device, root) is not there."""


@dataclass(frozen=True)
class Case:
    name: str
    measure: Callable[[], float]  # one sample, in the table's unit


@dataclass
class Row:
    name: str
    values: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


def _span(samples: list[float], digits: int) -> str:
    return f"{min(samples):.{digits}f}-{max(samples):.{digits}f}"


def compare(cases: list[Case], runs: int, baseline: str) -> list[Row]:
    """Measure every case in each of `runs` runs; ratios are value / baseline's value
    in the same run (a time ratio above 1 is slower, a throughput ratio below 1 is)."""
    return compare_groups([lambda c=case: {c.name: c.measure()} for case in cases], runs,
                          baseline)


def compare_groups(groups: list[Callable[[], dict[str, float]]], runs: int,
                   baseline: str) -> list[Row]:
    """`compare` for measurements that yield several named figures at once (a LOOKUP
    and its FORGET timed in turns; the CPU of both ends over one stretch of requests):
    in each run every group is measured once, in order; rows in the order first seen."""
    rows: dict[str, Row] = {}
    for _ in range(runs):
        values: dict[str, float] = {}
        for group in groups:
            values.update(group())
        _load_during_runs.append(os.getloadavg()[0])
        for name, value in values.items():
            row = rows.setdefault(name, Row(name))
            row.values.append(value)
            row.ratios.append(value / values[baseline] if values[baseline] else float("nan"))
    return list(rows.values())


def paired(rows: list[Row], pairs: list[tuple[str, str, str]]) -> list[Row]:
    """Rows (label, case, baseline case): the case's values, and its ratio to another
    case than the one `compare` used, still taken run by run."""
    by_name = {row.name: row for row in rows}
    out = []
    for label, name, base in pairs:
        case, baseline = by_name[name], by_name[base]
        out.append(Row(label, list(case.values),
                       [v / b for v, b in zip(case.values, baseline.values, strict=True)]))
    return out


def print_table(title: str, rows: list[Row], unit: str, ratio_label: str,
                digits: int = 1) -> None:
    """A table of medians and ranges over runs, one row per case (recorded for --out)."""
    _record["tables"].append({"title": title, "unit": unit, "ratio_label": ratio_label,
                              "digits": digits, "rows": [asdict(row) for row in rows]})
    width = max(len(row.name) for row in rows)
    print(f"\n{title}")
    print(f"  {'':{width}}  {unit:>10}  {'range':>17}  {ratio_label:>10}  {'range':>13}")
    for row in rows:
        print(f"  {row.name:{width}}  {statistics.median(row.values):10.{digits}f}  "
              f"{_span(row.values, digits):>17}  {statistics.median(row.ratios):10.3f}  "
              f"{_span(row.ratios, 3):>13}")


def time_samples_us(calls: dict[str, Callable[[], object]], rounds: int
                    ) -> dict[str, list[float]]:
    """Each call's time, in microseconds, `rounds` times, the calls taking turns (so a
    LOOKUP and the FORGET that undoes it are timed apart, both under the same load)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter_ns()
            call()
            samples[name].append((time.perf_counter_ns() - start) / 1000)
    return samples


def median_time_us(call: Callable[[], object], calls: int) -> float:
    """The median time of one call, in microseconds, over `calls` calls."""
    return statistics.median(time_samples_us({"call": call}, calls)["call"])


def record_samples(group: str, name: str, samples: list[float]) -> None:
    """Keep raw samples (a latency distribution) for the report's charts."""
    _record["samples"].setdefault(group, {}).setdefault(name, []).extend(samples)


def record_series(chart: str, line: str, x: float, samples: list[float]) -> None:
    """One point of a chart's line: its x and the per-run values at it (the report
    draws the median, with the range as an error bar)."""
    _record["series"].setdefault(chart, {}).setdefault(line, []).append([x, samples])


def settle_malloc() -> None:
    """Keep glibc's malloc from mmap'ing (and munmap'ing) every large reply: a 1 MiB
    bytes object would otherwise cost two system calls and fresh page faults each time,
    which slowed the copying READ rows more than the copy itself. Sets M_MMAP_THRESHOLD
    to 64 MiB in this process, and MALLOC_MMAP_THRESHOLD_ for every process it starts
    (pagefs-host, virtiofsd, guests), so each side of a ratio allocates alike."""
    threshold = 64 << 20
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(threshold)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    M_MMAP_THRESHOLD = -3  # <malloc.h>
    if libc.mallopt(M_MMAP_THRESHOLD, threshold) != 1:
        raise RuntimeError("mallopt(M_MMAP_THRESHOLD) failed")


def throughput_mib_s(call: Callable[[], object], volume: int, min_seconds: float = 0.25) -> float:
    """MiB/s of `call`, which moves `volume` bytes, repeated until `min_seconds` have
    passed: a pass of a few milliseconds alone would measure the scheduler, not the copy."""
    passes = 0
    start = time.perf_counter()
    while True:
        call()
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return volume * passes / elapsed / (1 << 20)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


@contextmanager
def machine_report(command: str, runs: int) -> Iterator[None]:
    """Print the date, cores and load average around a benchmark's tables."""
    started = time.monotonic()
    _record.update(command=command, runs=runs, cores=os.cpu_count(), load_start=load_average(),
                   date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit=_commit())
    print(f"{command}: {_record['date']}, {os.cpu_count()} cores, {runs} runs; "
          f"load average (1/5/15 min) {load_average()}")
    yield
    _record.update(load_end=load_average(), load_runs=list(_load_during_runs),
                   seconds=round(time.monotonic() - started))
    print(f"\nload average at the end: {load_average()}", end="")
    if _load_during_runs:
        print(f"; 1-minute load after each run: median {statistics.median(_load_during_runs):.2f}"
              f", range {_span(_load_during_runs, 2)}", end="")
    print()


def _commit() -> str:
    """The measured code's commit (with "+" if the work tree differs), or "" outside git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--", "..",
                                ":!reports"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return head + ("+" if head and dirty else "")


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR",
                        help="also write the tables, samples and series to DIR/<command>.json")


def slug(text: str) -> str:
    """A file-name-safe form of a title."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


KEPT_SAMPLES = 2000  # per distribution in the record: evenly spaced order statistics


def _thinned(samples: list[float]) -> list[float]:
    ordered = sorted(samples)
    if len(ordered) <= KEPT_SAMPLES:
        return ordered
    step = (len(ordered) - 1) / (KEPT_SAMPLES - 1)
    return [ordered[round(i * step)] for i in range(KEPT_SAMPLES)]


def _write_record(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    _record["samples"] = {group: {name: _thinned(samples) for name, samples in named.items()}
                          for group, named in _record["samples"].items()}
    path = os.path.join(out, f"{_record['command']}.json")
    with open(path + ".part", "w") as f:
        json.dump(_record, f)
    os.replace(path + ".part", path)


def _unwind(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_command(command: str, runs: int, body: Callable[[], None],
                out: str | None = None) -> int:
    """Run a benchmark's body between the machine report's lines (then write its record
    to `out`, if given); a missing or failing component (virtiofsd, pagefs-host, bindfs,
    FUSE) is one line on stderr, exit status 1. SIGTERM unwinds like Ctrl-C, so daemons,
    mounts and sockets are still cleaned up."""
    signal.signal(signal.SIGTERM, _unwind)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    settle_malloc()
    try:
        with machine_report(command, runs):
            body()
        if out:
            _write_record(out)
    except (MissingComponent, VirtiofsdError, HostDaemonError) as err:
        print(f"{command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{command}: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    return 0
