"""Fixtures for the conformance suite's own tests: small budgets, real targets."""

import errno
import os

import pytest

from pagefs.conformance.target import ROOT_NODEID, TargetFactory

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


def expect_read_only_refuses_create(factory: TargetFactory) -> None:
    """A read-only target from `factory` refuses a guest's CREATE with EROFS, and closes."""
    target = factory.start(read_only=True)
    try:
        with pytest.raises(OSError) as refused:
            target.connect().create(ROOT_NODEID, b"x", os.O_RDWR, 0o644)
        assert refused.value.errno == errno.EROFS
    finally:
        target.close()
