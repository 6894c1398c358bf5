"""Seeded bugs in pagefs-host itself (conformance/host_faults.py): the real daemon with one
method wrong fails the property the bug breaks."""

import pytest

from pagefs.conformance.families import family_of
from pagefs.conformance.host_faults import HOST_FAULTS, broken_host, main
from pagefs.conformance.report import FAIL
from pagefs.conformance.runner import run

BUDGET = {"examples": 20, "steps": 20, "seed": 0, "shrink_seconds": 5.0,
          "show_progress": False}


def _failing(fault: str, properties: list[str], budget: dict) -> set[str]:
    with broken_host(fault) as factory:
        report = run(factory, properties, **budget)
    return {v.property for v in report.verdicts if v.result == FAIL}


def test_an_unknown_host_fault_is_a_usage_error(capsys):
    assert main(["no-such-fault"]) == 2
    assert "usage:" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown host fault"):
        broken_host("no-such-fault")


def test_a_daemon_that_ignores_chmod_fails_coh_meta():
    quick = {**BUDGET, "examples": 5}
    assert _failing("chmod-ignored", ["COH-META"], quick) == {"COH-META"}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(HOST_FAULTS))
def test_a_seeded_host_bug_fails_its_property(fault):
    prop = HOST_FAULTS[fault][2]
    family = [p for p in family_of(prop).properties if p != "RECLAIM" or prop == "RECLAIM"]
    assert prop in _failing(fault, family, BUDGET)
