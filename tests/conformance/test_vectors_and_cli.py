"""Vectors replay cleanly and are all accounted for; the command line keeps its promises."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pagefs.conformance import targets
from pagefs.conformance.cli import main
from pagefs.conformance.report import Report
from pagefs.conformance.vectors import FORMAT, generate, replay

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def test_committed_vectors_replay_on_local_and_every_file_is_accounted_for():
    files = [p for p in VECTORS.rglob("*") if p.is_file()]
    with targets.factory("local") as factory:
        result = replay(str(VECTORS), factory)
    assert len(result.results) == len(files) > 40
    assert result.ok, result.summary()
    assert {r.status for r in result.results} <= {"pass", "skipped"}
    assert all(r.detail for r in result.results if r.status == "skipped")


def test_a_vector_the_target_departs_from_fails_with_its_trace(tmp_path):
    source = next((VECTORS / "v1" / "data-coherence").glob("*.json"))
    case = json.loads(source.read_text())
    load = next(s for s in case["steps"] if s["op"] == "LOAD")
    load["allowed"] = [{"type": "Ok", "value": {"hex": "ff" * load["args"]["length"]}}]
    (tmp_path / "broken.json").write_text(json.dumps(case))
    (tmp_path / "notes.txt").write_text("not a vector")
    (tmp_path / "future.json").write_text(json.dumps({"format": FORMAT, "version": 99}))
    with targets.factory("local") as factory:
        result = replay(str(tmp_path), factory)
    by_path = {r.path: r for r in result.results}
    assert by_path["broken.json"].status == "fail" and by_path["broken.json"].trace
    assert by_path["notes.txt"].status == "skipped"
    assert "version 99" in by_path["future.json"].detail
    assert not result.ok


def test_vectors_are_deterministic_for_a_seed(tmp_path):
    generate(str(tmp_path / "a"), cases=3, seed=7, steps=8)
    generate(str(tmp_path / "b"), cases=3, seed=7, steps=8)
    names = lambda d: sorted(p.name for p in (tmp_path / d).rglob("*.json"))  # noqa: E731
    assert names("a") == names("b") and names("a")


def test_run_writes_reports_and_exits_zero_when_nothing_fails(tmp_path, capsys):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    status = main(["run", "--target", "local", "--properties", "COH-READ,HANDLE",
                   "--examples", "3", "--steps", "8", "--report", str(md),
                   "--report", str(js)])
    assert status == 0
    report = Report.from_json(js.read_text())
    assert [(v.property, v.result) for v in report.verdicts] == [("COH-READ", "pass"),
                                                                ("HANDLE", "n/a")]
    assert "| COH-READ | data coherence | pass |" in md.read_text()
    assert "COH-READ" in capsys.readouterr().out


def test_run_exits_one_on_a_failure_and_prints_the_trace(capsys):
    status = main(["run", "--target", "local", "--inject", "missed-eof-fault", "--properties",
                   "EOF-FAULT", "--examples", "5", "--steps", "10", "--shrink-seconds", "5"])
    out = capsys.readouterr().out
    assert status == 1
    assert "EOF-FAULT fails; shortest trace found:" in out and "spec allows: FAULT" in out


def test_bad_usage_is_one_line_and_status_two(capsys):
    assert main(["run", "--target", "nfs"]) == 2
    assert main(["run", "--target", "local", "--properties", "COH-NOPE"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("pagefs-conformance: ") for line in err)


def test_matrix_writes_one_report_per_target_and_the_table(tmp_path):
    out = tmp_path / "reports"
    status = main(["matrix", "--out", str(out), "--targets", "local", "--properties",
                   "COH-READ,COH-META", "--examples", "3", "--steps", "8"])
    assert status == 0
    assert sorted(os.listdir(out)) == ["local.json", "local.md", "matrix.md"]
    assert "| COH-READ | pass (" in (out / "matrix.md").read_text()  # (judged steps)
    shutil.rmtree(out)


def test_committed_vectors_replay_cleanly_on_pagefs():
    with targets.factory("pagefs") as factory:
        result = replay(str(VECTORS), factory)
    assert result.ok, result.summary()
    assert all(r.status == "pass" for r in result.results if r.path.startswith("v1/"))


def test_replay_lists_what_is_not_a_regular_file_as_skipped_and_never_opens_it(tmp_path):
    needs_nothing = next(p for p in sorted((VECTORS / "v1").rglob("*.json"))
                         if not json.loads(p.read_text())["requires"])
    shutil.copy(needs_nothing, tmp_path / "case.json")
    os.mkfifo(tmp_path / "pipe.json")  # opening it for reading would wait for a writer
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "sub", tmp_path / "link")
    # A hang guard, not a timing: without it a regression here would stall the suite.
    done = subprocess.run([sys.executable, "-m", "pagefs.conformance.cli", "replay",
                           str(tmp_path), "--target", "local"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 passed, 0 failed, 2 skipped" in done.stdout
    assert "skipped: pipe.json: not a regular file: a FIFO" in done.stdout
    assert "skipped: link: a symbolic link, not followed" in done.stdout


def test_replay_of_a_missing_directory_or_one_without_vectors_is_a_one_line_error(tmp_path,
                                                                               capsys):
    (tmp_path / "notes.txt").write_text("not a vector")
    assert main(["replay", str(tmp_path / "missing"), "--target", "local"]) == 2
    assert main(["replay", str(tmp_path), "--target", "local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[0].endswith("missing: not a directory")
    assert "no pagefs conformance vectors" in err[1]


def test_bad_numbers_and_an_unwritable_report_are_refused_before_any_run(tmp_path, capsys):
    bad = [["--examples", "-1"], ["--examples", "0"], ["--steps", "0"], ["--steps", "x"],
           ["--shrink-seconds", "0"], ["--shrink-seconds", "nan"],
           ["--report", str(tmp_path / "missing" / "r.md")], ["--report", str(tmp_path)]]
    for extra in bad:
        assert main(["run", "--target", "local", *extra]) == 2, extra
    assert main(["vectors", "--out", str(tmp_path / "v"), "--cases", "0"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == len(bad) + 1 and all(e.startswith("pagefs-conformance: ") for e in err)
    assert captured.out == "" and not (tmp_path / "v").exists()


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_committed_vectors_are_what_the_spec_generates_now(tmp_path):
    """vectors/ must be what `pagefs-conformance vectors --out vectors` writes today."""
    generate(str(tmp_path))  # the defaults are what vectors/ is generated with
    fresh, committed = _tree(tmp_path), _tree(VECTORS)
    stale = sorted(set(committed) - set(fresh))
    missing = sorted(set(fresh) - set(committed))
    changed = sorted(p for p in set(fresh) & set(committed) if fresh[p] != committed[p])
    assert not (stale or missing or changed), (
        f"vectors/ is stale (no longer generated: {stale}; not committed: {missing}; "
        f"changed: {changed}): run `pagefs-conformance vectors --out vectors` and commit")


def test_regenerating_over_old_vectors_replaces_them_and_keeps_other_files(tmp_path):
    old = tmp_path / "v1" / "metadata"
    old.mkdir(parents=True)
    shutil.copy(next((VECTORS / "v1" / "metadata").glob("*.json")), old / "0000000000000000.json")
    (old / "notes.json").write_text("{}")
    generate(str(tmp_path), cases=2, steps=6)
    assert not (old / "0000000000000000.json").exists()
    assert (old / "notes.json").exists()
