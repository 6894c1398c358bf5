"""A real Linux guest (make vm) against pagefs-host with default options: the step list a
new user would try, a reset without unmount among them, and the exerciser with and
without mmap. Slow: each test boots a guest under TCG (about a minute on 2 cores)."""

from __future__ import annotations

import os
import tempfile

import pytest

from pagefs.conformance.vm import steps
from pagefs.conformance.vm.exercise import exercise
from pagefs.conformance.vm.image import DEFAULT_CACHE, Image, build
from pagefs.conformance.vm.stack import stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def image() -> Image:
    """The guest `make vm` builds (built here when missing: Debian packages, gcc)."""
    try:
        return Image.load()
    except Exception:
        return build(DEFAULT_CACHE)


def test_every_step_passes_on_pagefs_with_default_options(image: Image) -> None:
    run = steps.run("pagefs")
    assert run.passed, steps.markdown([run])
    assert [s.verdict for s in run.steps] == ["pass"] * len(steps.STEPS)


@pytest.mark.parametrize("mmap", [True, False], ids=["mmap", "no-mmap"])
def test_exerciser_holds_in_the_guest_on_pagefs(image: Image, mmap: bool) -> None:
    hostdir = tempfile.mkdtemp(prefix="pagefs-vm-fsx.")
    try:
        with stack("pagefs", hostdir) as vm:
            outcome = exercise(vm, "/mnt/pagefs/fsx.file", ops=3000, seed=7, mmap=mmap)
        assert outcome.held, outcome.output
        assert f"mmap {'on' if mmap else 'off'}" in outcome.output
    finally:
        for name in os.listdir(hostdir):
            os.unlink(os.path.join(hostdir, name))
        os.rmdir(hostdir)
