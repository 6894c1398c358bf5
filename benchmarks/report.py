"""make bench's report: DIR/README.md and PNG charts from the commands' records.

    .venv/bin/python benchmarks/report.py DIR [--seconds N]

Reads DIR/bench-*.json (written by each benchmark command's --out DIR) and writes
- DIR/README.md: every table the commands printed, medians and ranges over runs with
  the ratio to the baseline taken run by run, each command's date and load average;
- DIR/latency.png: the distribution of single-call times per opcode, pagefs-host vs
  virtiofsd vs the same operation natively (bench-wire's samples);
- DIR/throughput-file.png and DIR/throughput-window.png: sequential and random read
  throughput against the file size (window = file/4) and against the window size;
- DIR/scaling.png: aggregate GETATTR/s against the number of guests.
A chart whose data is missing (a section not run) is left out, and the README says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, nothing interactive
import matplotlib.pyplot as plt  # noqa: E402

COMMANDS = ("bench-wire", "bench-guest", "bench-scaling", "bench-mount")
TARGETS = ("native", "virtiofsd", "pagefs-host")  # the latency chart's boxes, in order
Record = dict[str, Any]


def load(directory: Path) -> dict[str, Record]:
    """The records present in `directory`, by command, in COMMANDS order."""
    return {name: json.loads((directory / f"{name}.json").read_text())
            for name in COMMANDS if (directory / f"{name}.json").exists()}


def _span(samples: list[float], digits: int) -> str:
    return f"{min(samples):.{digits}f}–{max(samples):.{digits}f}"


def table_markdown(table: Record) -> str:
    """One table: name, median value (range), median ratio (range)."""
    digits, unit, ratio = table["digits"], table["unit"], table["ratio_label"] or "ratio"
    lines = [f"**{table['title']}**", "",
             f"| | {unit} (median) | range | {ratio} (median) | range |", "|---|---|---|---|---|"]
    for row in table["rows"]:
        values, ratios = row["values"], [r for r in row["ratios"] if r == r]  # drop NaN
        ratio_cells = (f"{statistics.median(ratios):.3f} | {_span(ratios, 3)}" if ratios
                       else "n/a | n/a")
        lines.append(f"| {row['name']} | {statistics.median(values):.{digits}f} | "
                     f"{_span(values, digits)} | {ratio_cells} |")
    return "\n".join(lines)


def _latency_chart(record: Record, path: Path) -> bool:
    samples = record.get("samples", {}).get("latency", {})
    opcodes = [name.split(" -> ")[0] for name in samples if name.endswith(" -> pagefs-host")]
    if not opcodes:
        return False
    columns = min(4, len(opcodes))
    rows = -(-len(opcodes) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat[len(opcodes):]:
        ax.set_visible(False)
    for ax, opcode in zip(axes.flat, opcodes, strict=False):  # spare axes hidden above
        present = [t for t in TARGETS if f"{opcode} -> {t}" in samples]
        ax.boxplot([samples[f"{opcode} -> {t}"] for t in present], whis=(5, 95),
                   showfliers=False)
        ax.set_xticks(range(1, len(present) + 1), present, rotation=30, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(opcode, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for row in axes:
        row[0].set_ylabel("µs per call")
    fig.text(0.5, 0.005, "box: quartiles, line: median, whiskers: 5th–95th percentile",
             ha="center", fontsize=8)
    fig.suptitle("Single-call latency per request kind (bench-wire, all runs pooled)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _line_chart(series: dict[str, dict[str, list]], charts: list[tuple[str, str]],
                xlabel: str, ylabel: str, title: str, path: Path, logx: bool = True) -> bool:
    present = [(key, sub) for key, sub in charts if key in series]
    if not present:
        return False
    fig, axes = plt.subplots(1, len(present), figsize=(max(8, 6 * len(present)), 4.5),
                             squeeze=False)
    for ax, (key, subtitle) in zip(axes[0], present, strict=True):
        for line, points in series[key].items():
            points = sorted(points)
            xs = [x for x, _ in points]
            medians = [statistics.median(v) for _, v in points]
            low = [m - min(v) for m, (_, v) in zip(medians, points, strict=True)]
            high = [max(v) - m for m, (_, v) in zip(medians, points, strict=True)]
            ax.errorbar(xs, medians, yerr=[low, high], marker="o", capsize=3, label=line)
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(subtitle, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def charts(records: dict[str, Record], directory: Path) -> dict[str, str]:
    """Draw every chart there is data for; returns file name -> what it shows."""
    drawn = {}
    if "bench-wire" in records and _latency_chart(records["bench-wire"],
                                                  directory / "latency.png"):
        drawn["latency.png"] = "latency distribution per request kind"
    series = records.get("bench-guest", {}).get("series", {})
    if _line_chart(series, [("throughput-file-sequential", "sequential 1 MiB reads"),
                            ("throughput-file-random", "random 4 KiB reads")],
                   "file size, MiB (window = file/4)", "MiB/s (median; bars: range)",
                   "Read throughput against file size", directory / "throughput-file.png"):
        drawn["throughput-file.png"] = "read throughput against file size"
    if _line_chart(series, [("throughput-window-sequential", "sequential 1 MiB reads"),
                            ("throughput-window-random", "random 4 KiB reads")],
                   "window size / file size", "MiB/s (median; bars: range)",
                   "Read throughput against window size (largest file of the sweep)",
                   directory / "throughput-window.png"):
        drawn["throughput-window.png"] = "read throughput against window size"
    scaling = records.get("bench-scaling", {}).get("series", {})
    if _line_chart(scaling, [("scaling-getattr", "GETATTR, one at a time per guest")],
                   "guests", "aggregate requests/s (median; bars: range)",
                   "Scaling with guests: pagefs-host (a worker per guest) vs virtiofsd (one each)",
                   directory / "scaling.png"):
        drawn["scaling.png"] = "aggregate GETATTR/s against the number of guests"
    return drawn


def noise_note(records: dict[str, Record]) -> list[str]:
    """A warning paragraph when the load during the runs exceeded the cores."""
    loads = [load for r in records.values() for load in r.get("load_runs", [])]
    cores = max((r.get("cores") or 1 for r in records.values()), default=1)
    if not loads or statistics.median(loads) <= cores:
        return []
    return [f"**Noisy run**: the 1-minute load average after each run was "
            f"{statistics.median(loads):.1f} (median; {min(loads):.1f}–{max(loads):.1f}) on "
            f"{cores} cores, so other work shared the CPUs with every figure. Trust a "
            f"difference only where the ranges do not overlap.", ""]


def markdown(records: dict[str, Record], drawn: dict[str, str], seconds: int | None) -> str:
    loads = [f"`{name}` {r['date']}: load average (1/5/15 min) {r['load_start']} at the "
             f"start, {r['load_end']} at the end" for name, r in records.items()]
    took = f" `make bench` took {seconds // 60} min {seconds % 60} s." if seconds else ""
    parts = [
        "# pagefs benchmark report",
        "",
        "Generated by `make bench` (benchmarks/report.py); what each figure is: "
        "[docs/BENCHMARKS.md](../../docs/BENCHMARKS.md). Every ratio is taken between "
        "figures measured back to back in the same run; each cell is the median over runs, "
        "with the range (min–max). Absolute figures depend on the machine and its load: "
        f"compare ratios, and only within one report.{took}",
        "",
        *[f"- {line}" for line in loads],
        "",
        *noise_note(records),
        "## Charts",
        "",
    ]
    for name, what in drawn.items():
        parts += [f"![{what}]({name})", ""]
    missing = [c for c in COMMANDS if c not in records]
    if missing:
        parts += [f"Not in this report (not run, or failed: see its output): "
                  f"{', '.join(missing)}.", ""]
    for name, record in records.items():
        commit = f", commit {record['commit']}" if record.get("commit") else ""
        parts += [f"## {name}", "",
                  f"{record['date']}{commit}, {record['cores']} cores, {record['runs']} runs, "
                  f"{record.get('seconds', '?')} s.", ""]
        for table in record["tables"]:
            parts += [table_markdown(table), ""]
    return "\n".join(parts)


def write(directory: Path, seconds: int | None = None) -> list[Path]:
    """Write README.md and the charts into `directory`; returns the files written."""
    records = load(directory)
    if not records:
        raise FileNotFoundError(f"no bench-*.json records in {directory}")
    drawn = charts(records, directory)
    readme = directory / "README.md"
    readme.write_text(markdown(records, drawn, seconds) + "\n")
    return [readme, *(directory / name for name in drawn)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seconds", type=int, help="how long make bench took")
    args = parser.parse_args(argv)
    try:
        written = write(args.directory, args.seconds)
    except FileNotFoundError as err:
        print(f"bench report: {err}", file=sys.stderr)
        return 1
    print("bench report: wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
