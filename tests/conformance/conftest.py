"""Fixtures for the conformance suite's own tests: small budgets, real targets."""

import os

import pytest

# Enough cases to meet every fault with the scenes and probes, small enough for `make test`.
BUDGET = {"examples": 8, "steps": 15, "seed": 0, "shrink_seconds": 5.0, "show_progress": False}


@pytest.fixture(scope="session")
def budget() -> dict:
    return dict(BUDGET)


@pytest.fixture
def no_leftover_mounts():
    """The test must leave no mount of its own behind."""
    def ours() -> set[str]:
        with open("/proc/self/mounts") as f:
            return {line.split()[1] for line in f if "pagefs-conformance" in line}
    before = ours()
    yield
    assert ours() == before


@pytest.fixture
def root_only() -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (FUSE mounts, virtiofsd): run the tests as root")
