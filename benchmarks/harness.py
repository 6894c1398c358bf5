"""What every benchmark command shares: runs, medians and ranges, ratio tables, load.

A benchmark is a list of `Case`s, one of them the baseline. `compare` measures every
case once per run, back to back and in the same order, so the ratio of a case to the
baseline is taken between figures measured under the same load; the table reports
the median over runs of each figure and of each ratio, with their ranges (min-max).
The machine is shared and noisy: only the ratios mean anything, and the load average
printed with each table says how noisy it was.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pagefs.impl.client.host_daemon import HostDaemonError
from pagefs.impl.client.virtiofsd import VirtiofsdError

_load_during_runs: list[float] = []  # 1-minute load average after each run


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
    rows = [Row(case.name) for case in cases]
    base_index = [case.name for case in cases].index(baseline)
    for _ in range(runs):
        values = [case.measure() for case in cases]
        _load_during_runs.append(os.getloadavg()[0])
        for row, value in zip(rows, values, strict=True):
            row.values.append(value)
            row.ratios.append(value / values[base_index])
    return rows


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
    """A table of medians and ranges over runs, one row per case."""
    width = max(len(row.name) for row in rows)
    print(f"\n{title}")
    print(f"  {'':{width}}  {unit:>10}  {'range':>17}  {ratio_label:>10}  {'range':>13}")
    for row in rows:
        print(f"  {row.name:{width}}  {statistics.median(row.values):10.{digits}f}  "
              f"{_span(row.values, digits):>17}  {statistics.median(row.ratios):10.3f}  "
              f"{_span(row.ratios, 3):>13}")


def median_time_us(call: Callable[[], object], calls: int) -> float:
    """The median time of one call, in microseconds, over `calls` calls."""
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


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
    print(f"{command}: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, {runs} runs; load average (1/5/15 min) {load_average()}")
    yield
    print(f"\nload average at the end: {load_average()}", end="")
    if _load_during_runs:
        print(f"; 1-minute load after each run: median {statistics.median(_load_during_runs):.2f}"
              f", range {_span(_load_during_runs, 2)}", end="")
    print()


def _unwind(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_command(command: str, runs: int, body: Callable[[], None]) -> int:
    """Run a benchmark's body between the machine report's lines; a missing or failing
    component (virtiofsd, pagefs-host, bindfs, FUSE) is one line on stderr, exit status 1.
    SIGTERM unwinds like Ctrl-C, so daemons, mounts and sockets are still cleaned up."""
    signal.signal(signal.SIGTERM, _unwind)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with machine_report(command, runs):
            body()
    except (MissingComponent, VirtiofsdError, HostDaemonError) as err:
        print(f"{command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{command}: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    return 0
