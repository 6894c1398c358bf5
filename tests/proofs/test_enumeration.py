"""Design ≡ spec by exhaustive enumeration: it agrees now, and it sees the old design's
SETUPMAPPING (no read-access check) and a WRITE without the size limit."""

from __future__ import annotations

import pytest

from pagefs.proofs import enumeration, transitions


def test_every_short_program_agrees() -> None:
    r = enumeration.enumerate_programs(2)
    assert r.mismatch is None, str(r.mismatch)
    assert r.programs == len(enumeration.ALPHABET) + len(enumeration.ALPHABET) ** 2
    assert r.states > 20


def test_old_setupmapping_rule_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before issue 12 the design mapped through a write-only handle; the spec says EACCES.
    The 7-step story of the issue (CREATE write-only, a read SETUPMAPPING, a LOAD) is
    found here at its shortest: the mapping itself is already wrong."""
    monkeypatch.setattr(transitions, "setupmapping", enumeration.old_setupmapping)
    r = enumeration.enumerate_programs(3)
    assert r.mismatch is not None
    names = [name for name, _ in r.mismatch.program]
    assert names == ["CREATE", "SETUPMAPPING"]
    assert r.mismatch.program[0][1][3] & 3 == 1  # O_WRONLY
    assert "EACCES" in r.mismatch.why


def test_write_without_size_limit_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    write = transitions.write
    monkeypatch.setattr(transitions, "write", lambda *a: write(*a, limit=False))
    r = enumeration.enumerate_programs(3)
    assert r.mismatch is not None
    assert r.mismatch.program[-1][0] == "WRITE"
    assert "EFBIG" in r.mismatch.why
