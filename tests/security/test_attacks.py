"""The attack list (attacks.py) against pagefs-host and QEMU's C virtiofsd, each on a
fresh scene, through the project's own front-end: nothing outside the export is read,
written or created, and a read-only export is not written, whatever the back-end answers.
The answers side by side are reports/security.md (tests/security/report.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .attacks import ATTACKS, BACKENDS, KNOWN_DEPARTURES, run_attack, scene_of

pytestmark = pytest.mark.needs_root


def cases() -> list:
    """Every attack on every back-end; the departures QEMU's virtiofsd is known for are
    expected to fail, strictly (a virtiofsd that starts holding there fails the run)."""
    out = []
    for name in ATTACKS:
        for backend in BACKENDS:
            known = KNOWN_DEPARTURES.get((name, backend))
            marks = [pytest.mark.xfail(strict=True, raises=AssertionError,
                                       reason=f"{backend}: {known}")] if known else []
            out.append(pytest.param(name, backend, marks=marks, id=f"{name}-{backend}"))
    return out


@pytest.mark.parametrize(("name", "backend"), cases())
def test_attack_stays_inside_the_export(name: str, backend: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root: the scene places device nodes and other users' files")
    run_attack(name, backend, tmp_path, scene_of(name))


def test_the_list_is_long_enough() -> None:
    assert len(ATTACKS) >= 30
