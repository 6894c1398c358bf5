"""Programs no one here wrote hold on pagefs-mount over pagefs-host: a short run of each
in `make test`, the full one (exerciser at 100,000 ops) marked slow."""

from __future__ import annotations

import pytest

from pagefs.conformance.programs import WORKLOADS, Scale, run_workload
from pagefs.conformance.programs_report import main as report_main
from pagefs.conformance.stacks import mounted_stack
from pagefs.impl.client.mount_process import pagefs_mount


@pytest.fixture(scope="module")
def share(tmp_path_factory):
    with mounted_stack("pagefs-mount", str(tmp_path_factory.mktemp("programs"))) as path:
        yield path


# git and tar take ~40-60 s each on 2 cores: make test-all runs them, make test the rest
@pytest.mark.parametrize("program", [
    pytest.param(w, marks=pytest.mark.slow) if w in ("git", "tar") else w for w in WORKLOADS])
def test_program_holds_on_pagefs_mount(share, program):
    outcome = run_workload(program, share, Scale.SHORT)
    assert outcome.held, outcome.detail


def test_a_failing_program_is_reported_as_failed(host, mountpoint):
    """The judge can say no: on a read-only mount nothing can be written, so it fails."""
    with pagefs_mount(host.socket_path, str(mountpoint), read_only=True):
        outcome = run_workload("sqlite", str(mountpoint), Scale.SHORT)
    assert not outcome.held and "Read-only file system" in outcome.detail


def test_report_puts_stacks_side_by_side(tmp_path):
    out = tmp_path / "programs.md"
    status = report_main(["--out", str(out), "--scale", "short", "--stacks",
                          "pagefs-mount,local", "--programs", "compileall,sqlite"])
    text = out.read_text()
    assert status == 0, text
    assert "| program | `pagefs-mount` | `local` |" in text
    assert text.count("held, ") == 4


@pytest.mark.slow
@pytest.mark.parametrize("program", list(WORKLOADS))
def test_program_holds_on_pagefs_mount_at_full_scale(share, program):
    outcome = run_workload(program, share, Scale.LONG)
    assert outcome.held, outcome.detail
