"""Every benchmark command end to end at the smallest scale, then the report (slow; root,
virtiofsd and bindfs, as `make bench` needs). Figures are not judged, only that each
command runs, records what it printed, and leaves no process or mount behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pagefs.impl.client.virtiofsd import VirtiofsdError, find_virtiofsd

ROOT = Path(__file__).resolve().parents[2]
SMALL = {
    "wire.py": ["--runs", "1", "--calls", "40", "--idle-seconds", "0.2"],
    "guest.py": ["--runs", "1", "--size-mib", "16", "--guests", "2", "--memory-runs", "1",
                 "--random-reads", "50", "--rounds", "100", "--sweep-runs", "1",
                 "--sweep-sizes", "8,16"],
    "scaling.py": ["--runs", "1", "--guests", "1,2", "--seconds", "0.3"],
    "frontend_cpu.py": ["--runs", "1", "--calls", "20", "--baseline", sys.executable],
}

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (virtiofsd sandboxes itself; bindfs mounts)"
    try:
        find_virtiofsd()
    except VirtiofsdError as err:
        return str(err)
    if shutil.which("bindfs") is None:
        return "bindfs is not installed"
    return None


def _children() -> set[int]:
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        return {int(pid) for pid in f.read().split()}


def test_every_command_records_and_the_report_draws(tmp_path: Path) -> None:
    reason = _missing()
    if reason:
        pytest.skip(f"inconclusive: {reason}")
    before = _children()
    for script, flags in SMALL.items():
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *flags,
                               "--out", str(tmp_path)], capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{script}: {done.stderr[-2000:]}"
        assert "load average at the end" in done.stdout
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"),
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "README.md").read_text()
    for heading in ("## bench-wire", "## bench-guest", "## bench-scaling",
                    "SETUPMAPPING 2 MiB", "README's API", "daemon CPU per GETATTR",
                    "file larger than the window", "page tables (VmPTE)", "aggregate GETATTR/s",
                    "reply waits that slept"):
        assert heading in text, heading
    for chart in ("latency.png", "throughput-file.png", "throughput-window.png", "scaling.png"):
        assert (tmp_path / chart).read_bytes().startswith(b"\x89PNG"), chart
    assert _children() <= before  # no daemon, guest or ping-pong side left running
    with open("/proc/mounts") as f:
        assert "pagefs-bench" not in f.read()
