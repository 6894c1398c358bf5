"""The import graph docs/ARCHITECTURE.md draws is the one the code has.

Every module of the installed packages is parsed (no import runs), each import resolved
to the module it names, and each edge between two layers checked against the graph in
ARCHITECTURE.md's ```layers block. The checker is also run on edges the old layout had,
to show it refuses them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
# Where each import name's source lives (pyproject's package-dir).
SOURCE = {"pagefs.spec": "spec", "pagefs.proofs": "proofs", "pagefs.impl": "impl",
          "pagefs.conformance": "conformance", "pagefs": "pagefs"}


def layer_graph(text: str) -> dict[str, frozenset[str]]:
    """The ```layers block: each line a layer and the layers it may import ('-': none)."""
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/ARCHITECTURE.md has no ```layers block"
    graph = {}
    for line in block.group(1).splitlines():
        name, *deps = line.split()
        graph[name] = frozenset(d for d in deps if d != "-")
    return graph


def layer_of(module: str, graph: dict[str, frozenset[str]]) -> str | None:
    """The longest layer name that is `module` or a package above it."""
    owners = [name for name in graph if module == name or module.startswith(name + ".")]
    return max(owners, key=len, default=None)


def forbidden(edges: set[tuple[str, str]], graph: dict[str, frozenset[str]]) -> list[str]:
    """The edges (importer, imported) the graph does not allow, as readable lines."""
    bad = []
    for importer, imported in sorted(edges):
        source, target = layer_of(importer, graph), layer_of(imported, graph)
        if target is None:
            continue  # not ours: the standard library, z3, hypothesis, cffi modules' deps
        if source is None:
            bad.append(f"{importer} is in no layer of the graph")
        elif target != source and target not in graph[source]:
            bad.append(f"{importer} ({source}) imports {imported} ({target})")
    return bad


def _module_name(path: Path) -> str:
    for name, folder in sorted(SOURCE.items(), key=lambda item: -len(item[1])):
        base = ROOT / folder
        if path.is_relative_to(base):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([name, *parts])
    raise AssertionError(path)


def _is_module(name: str) -> bool:
    for prefix, folder in SOURCE.items():
        if name == prefix or name.startswith(prefix + "."):
            rest = name[len(prefix):].lstrip(".").split(".") if name != prefix else []
            base = ROOT / folder / Path(*rest) if rest else ROOT / folder
            if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
                return True
    return False


def imports_of(path: Path) -> set[str]:
    """The modules `path` imports, at any depth of its code (TYPE_CHECKING included)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if _is_module(full) else base)
    return found


def project_edges() -> set[tuple[str, str]]:
    edges = set()
    for folder in SOURCE.values():
        for path in (ROOT / folder).rglob("*.py"):
            if path.name.startswith("_") and path.name.endswith("_build.py"):
                continue  # cffi build scripts run at install time, outside the layers
            module = _module_name(path)
            edges.update((module, imported) for imported in imports_of(path))
    return edges


def test_every_import_is_an_edge_the_architecture_allows() -> None:
    graph = layer_graph(ARCHITECTURE.read_text())
    edges = project_edges()
    assert len(edges) > 100  # the walk found the project
    assert forbidden(edges, graph) == []


def test_the_graph_names_only_layers_that_exist() -> None:
    graph = layer_graph(ARCHITECTURE.read_text())
    for name, deps in graph.items():
        assert _is_module(name), name
        assert deps <= graph.keys(), (name, deps - graph.keys())


@pytest.mark.parametrize("edge", [
    # the old layout's cycle: the verify driver lived in proofs and loaded conformance
    ("pagefs.conformance.quick", "pagefs.proofs.verify"),
    ("pagefs.proofs.verify", "pagefs.conformance.quick"),
    # the Target API took its value types from the host daemon
    ("pagefs.conformance.target", "pagefs.impl.host.passthrough"),
    # the transport held the FUSE client, which speaks the FUSE protocol
    ("pagefs.impl.transport.fuse_client", "pagefs.impl.protocol"),
    # the implementation consulting the spec
    ("pagefs.impl.host.dispatch", "pagefs.spec.registry"),
])
def test_the_checker_refuses_the_edges_the_old_layout_had(edge: tuple[str, str]) -> None:
    graph = layer_graph(ARCHITECTURE.read_text())
    assert len(forbidden({edge}, graph)) == 1


def test_relative_and_package_imports_resolve_to_modules() -> None:
    dispatch = imports_of(ROOT / "impl" / "host" / "dispatch.py")
    assert "pagefs.impl.protocol" in dispatch  # `from pagefs.impl import protocol as p`
    passthrough = imports_of(ROOT / "impl" / "host" / "passthrough.py")
    assert "pagefs.impl.host.confine" in passthrough  # `from . import confine, syscalls`
    assert "pagefs.impl.host.sandbox" in passthrough  # `from .sandbox import ...`
