"""Comparing observed times (TimeMap) and the generated semantics document."""

from pathlib import Path

from pagefs.spec import REGISTRY
from pagefs.spec.datatypes import Mtime
from pagefs.spec.document import render
from pagefs.spec.properties import PROPERTIES
from pagefs.spec.times import TimeMap

SEMANTICS = Path(__file__).resolve().parents[2] / "docs" / "SEMANTICS.md"


def test_time_map_accepts_coarse_clocks_and_catches_stale_times() -> None:
    times = TimeMap()
    times = times.observe(2, Mtime(1), 100)
    assert times is not None
    assert times.observe(2, Mtime(1), 100) is times
    assert times.observe(2, Mtime(1), 101) is None  # one version, two times
    coarse = times.observe(2, Mtime(2), 100)  # same clock tick: allowed
    assert coarse is not None
    assert coarse.observe(2, Mtime(3), 99) is None  # a later version shows an earlier time
    assert coarse.observe(3, Mtime(1), 5) is not None  # another inode: no relation
    assert times.observe(2, Mtime(4, ns=7), 7) is times  # explicit times are exact
    assert times.observe(2, Mtime(4, ns=7), 8) is None


def test_semantics_document_is_fresh() -> None:
    """docs/SEMANTICS.md must be what `make docs` generates now."""
    assert SEMANTICS.read_text() == render(), "stale: run `make docs` and commit"


def test_document_covers_every_operation_and_property() -> None:
    text = render()
    for name in REGISTRY:
        assert f"### {name}\n" in text
    for prop in PROPERTIES:
        assert f"### {prop.name}\n" in text and prop.definition in text
    assert "Contracts (checked by CrossHair)" in text
    assert "Out of scope" in text and "owner" in text
