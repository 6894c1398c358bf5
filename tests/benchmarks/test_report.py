"""The benchmark machinery on given figures: ratios run by run, the record, the report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import harness
import pytest
import report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def fresh_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "_record", {"tables": [], "samples": {}, "series": {}})
    monkeypatch.setattr(harness, "_load_during_runs", [])


def test_ratios_are_taken_within_each_run() -> None:
    # The baseline doubles from run to run and the case follows at 3x: every run's ratio
    # is 3 although the values spread by a factor of 4.
    base = itertools.count()
    values = iter([1.0, 2.0, 4.0])

    def baseline() -> dict[str, float]:
        next(base)
        current = next(values)
        return {"base": current, "case": 3 * current}

    rows = harness.compare_groups([baseline], runs=3, baseline="base")
    case = next(row for row in rows if row.name == "case")
    assert case.values == [3.0, 6.0, 12.0]
    assert case.ratios == [3.0, 3.0, 3.0]
    assert [row.name for row in rows] == ["base", "case"]


def test_a_zero_baseline_gives_no_ratio() -> None:
    rows = harness.compare_groups([lambda: {"idle": 0.0, "other": 1.0}], 2, baseline="idle")
    assert all(r != r for r in rows[1].ratios)  # NaN, never a division error


def test_time_samples_take_turns() -> None:
    order: list[str] = []
    samples = harness.time_samples_us({"a": lambda: order.append("a"),
                                       "b": lambda: order.append("b")}, 3)
    assert order == ["a", "b"] * 3
    assert [len(s) for s in samples.values()] == [3, 3]


def test_thinned_keeps_the_distribution_ends() -> None:
    samples = [float(i) for i in range(10 * harness.KEPT_SAMPLES, 0, -1)]
    kept = harness._thinned(samples)
    assert len(kept) == harness.KEPT_SAMPLES
    assert kept[0] == 1.0 and kept[-1] == 10.0 * harness.KEPT_SAMPLES
    assert kept == sorted(kept)


def _records(directory: Path) -> None:
    """Records as the commands write them, from figures given here."""
    harness._record.update(command="bench-wire", runs=2, cores=2, date="2026-12-05 06:00 UTC",
                           load_start="1.00 1.00 1.00", load_end="2.00 1.50 1.00", seconds=30)
    rows = harness.compare_groups(
        [iter([{"GETATTR -> virtiofsd": 40.0, "GETATTR -> pagefs-host": 20.0},
               {"GETATTR -> virtiofsd": 50.0, "GETATTR -> pagefs-host": 30.0}]).__next__],
        2, baseline="GETATTR -> virtiofsd")
    harness.print_table("Round trips", rows, "us", "x virtiofsd")
    for target, base in (("native", 1.0), ("virtiofsd", 40.0), ("pagefs-host", 20.0)):
        harness.record_samples("latency", f"GETATTR -> {target}",
                               [base + i % 7 for i in range(100)])
    harness._write_record(str(directory))
    harness._record.update(command="bench-scaling", tables=[], samples={}, series={})
    for n, (v, pfs) in {1: (10e3, 12e3), 2: (18e3, 25e3)}.items():
        harness.record_series("scaling-getattr", "virtiofsd (one per guest)", n, [v, v * 1.1])
        harness.record_series("scaling-getattr", "pagefs-host (one daemon)", n, [pfs, pfs])
    harness._write_record(str(directory))


def test_report_tables_and_charts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _records(tmp_path)
    written = report.write(tmp_path, seconds=754)
    text = (tmp_path / "README.md").read_text()
    # medians over the two runs and the ratio's median and range, run by run
    assert "| GETATTR -> pagefs-host | 25.0 | 20.0–30.0 | 0.550 | 0.500–0.600 |" in text
    assert "| GETATTR -> virtiofsd | 45.0 | 40.0–50.0 | 1.000 | 1.000–1.000 |" in text
    assert "`make bench` took 12 min 34 s." in text
    assert "load average (1/5/15 min) 1.00 1.00 1.00 at the start" in text
    assert "**Noisy run**" not in text  # load 1-2 on 2 cores
    assert ("Not in this report (not run, or failed: see its output): bench-guest, "
            "bench-mount.") in text
    assert "![latency distribution per request kind](latency.png)" in text
    assert "throughput-file.png" not in text  # no sweep recorded: no chart, no link
    for name in ("latency.png", "scaling.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)
        assert tmp_path / name in written
    assert not (tmp_path / "throughput-file.png").exists()


def test_a_loaded_machine_is_called_noisy(tmp_path: Path) -> None:
    _records(tmp_path)
    wire = json.loads((tmp_path / "bench-wire.json").read_text())
    wire["load_runs"] = [6.0, 9.0, 7.0]
    (tmp_path / "bench-wire.json").write_text(json.dumps(wire))
    report.write(tmp_path)
    assert ("**Noisy run**: the 1-minute load average after each run was 7.0 (median; "
            "6.0–9.0) on 2 cores") in (tmp_path / "README.md").read_text()


def test_report_without_records_says_so(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main([str(tmp_path)]) == 1
    assert "no bench-*.json records" in capsys.readouterr().err


def test_record_is_plain_json(tmp_path: Path) -> None:
    _records(tmp_path)
    wire = json.loads((tmp_path / "bench-wire.json").read_text())
    assert wire["tables"][0]["rows"][1]["ratios"] == [0.5, 0.6]
    assert len(wire["samples"]["latency"]["GETATTR -> native"]) == 100
