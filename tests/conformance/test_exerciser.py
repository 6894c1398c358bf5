"""The file exerciser holds on a sound file and catches one that departs from its model."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from pagefs.conformance.exerciser import binary, run


def test_holds_on_a_local_file_with_mmap(tmp_path):
    outcome = run(str(tmp_path / "f"), ops=20_000, seed=7)
    assert outcome.held, outcome.output
    assert "20000 ops held" in outcome.output and "MAPWRITE" in outcome.output


def test_holds_on_a_local_file_without_mmap(tmp_path):
    outcome = run(str(tmp_path / "f"), ops=5_000, seed=8, mmap=False)
    assert outcome.held, outcome.output
    assert "mmap off" in outcome.output and "MAPREAD" not in outcome.output


def test_same_seed_same_ops(tmp_path):
    a = run(str(tmp_path / "a"), ops=3_000, seed=11)
    b = run(str(tmp_path / "b"), ops=3_000, seed=11)
    assert a.held and b.held and a.output == b.output


def test_catches_pages_changed_behind_its_back(tmp_path):
    """A file whose bytes a second writer changes (a back-end serving stale or foreign
    pages) departs from the model: exit 1, the first bad byte and the op log."""
    path = str(tmp_path / "f")
    proc = subprocess.Popen([binary(), "-q", "-N", "100000000", "-S", "5", path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop = threading.Event()

    def scribble() -> None:
        while not stop.is_set() and proc.poll() is None:
            try:
                fd = os.open(path, os.O_WRONLY)
            except FileNotFoundError:
                time.sleep(0.001)
                continue
            size = os.fstat(fd).st_size
            os.pwrite(fd, b"\xff" * 64, size // 2 if size > 64 else 0)
            os.close(fd)
            time.sleep(0.01)

    writer = threading.Thread(target=scribble)
    writer.start()
    try:
        output, _ = proc.communicate(timeout=120)
    finally:
        stop.set()
        writer.join()
    assert proc.returncode == 1, output
    assert "MISMATCH at op" in output
    assert "(seed 5, file" in output   # the op log's heading
    assert "WRITE" in output or "TRUNCATE" in output


def test_catches_writes_that_are_dropped(tmp_path):
    """/dev/zero takes every write and keeps none: its size stays 0, and the first write departs."""
    outcome = run("/dev/zero", ops=100, seed=1, mmap=False, fallocate=False)
    assert outcome.status == 1, outcome.output
    assert "MISMATCH" in outcome.output


def test_bad_usage_is_one_line_and_status_2(tmp_path):
    done = subprocess.run([binary(), "-N", "lots", str(tmp_path / "f")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "fsx: -N ops must be a number (with k, m or g), not 'lots'"
    missing = run(str(tmp_path / "no" / "such" / "f"), ops=1)
    assert missing.status == 2 and "cannot open" in missing.output


def test_module_entry_point_prints_the_binary():
    done = subprocess.run([sys.executable, "-m", "pagefs.conformance.exerciser", "--build"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == binary()
