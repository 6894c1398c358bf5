"""The documents cite only files that exist: every repository path named in README.md and
docs/*.md (in backticks or as a link) is there, or is what a make target writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP = ("spec/", "proofs/", "impl/", "conformance/", "tests/", "benchmarks/", "docs/",
       "scripts/", "vectors/", "reports/", "pagefs/", ".ci/")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _is_ours(path: str) -> bool:
    return path.startswith(TOP) or path in ("Makefile", "pyproject.toml", "constraints.txt",
                                            "setup.py", "README.md")


def cited_paths(text: str, where: Path) -> set[str]:
    """Repository paths a document names, relative to the repository: `impl/x.py` in
    backticks as it stands, a link [x](DESIGN.md) relative to the document."""
    return named_paths(text) | linked_paths(text, where)


def named_paths(text: str) -> set[str]:
    """Repository paths named in backticks: `impl/x.py`, `tests/x.py::test_y`."""
    found = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.rstrip(".,:;)")
        if not re.search(r"[*<>{}$|]|\.\.\.", token) and _is_ours(token):
            found.add(token.split("::")[0])
    return found


def linked_paths(text: str, where: Path) -> set[str]:
    """Repository files a Markdown link points at, relative to the document."""
    found = set()
    for link in re.findall(r"\]\(([^)#\s]+)", text):
        if link.startswith(("http:", "https:", "mailto:")):
            continue
        target = (where.parent / link).resolve()
        if target.is_relative_to(ROOT):
            found.add(target.relative_to(ROOT).as_posix())
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_cited_path_exists(doc: Path) -> None:
    text = doc.read_text()
    paths = cited_paths(text, doc)
    # what a make target writes (reports/...) may be cited before it is made
    made = (ROOT / "Makefile").read_text()
    missing = sorted(p for p in paths if not (ROOT / p).exists() and p not in made)
    assert missing == [], f"{doc.name} cites what is not there: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_link_leads_somewhere(doc: Path) -> None:
    """A link is followed by a reader now: one to a report a make target has not yet
    written (and nobody committed) is a broken link, unlike a mention of it."""
    broken = sorted(p for p in linked_paths(doc.read_text(), doc) if not (ROOT / p).exists())
    assert broken == [], f"{doc.name} links to what is not there: {broken}"


def test_the_checker_sees_a_missing_file() -> None:
    readme = ROOT / "README.md"
    assert cited_paths("see `impl/nowhere.py` and [x](docs/NOPE.md)", readme) == {
        "impl/nowhere.py", "docs/NOPE.md"}
    assert linked_paths("[`reports/vm.md`](reports/vm.md)", readme) == {"reports/vm.md"}
