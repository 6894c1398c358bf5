"""Generate the semantics document (docs/SEMANTICS.md) from the spec's own docstrings.

`python -m pagefs.spec.document` prints it; `make docs` writes it. The prose is the
spec's docstrings and the contracts are its PEP 316 conditions, so the document and the
spec cannot drift apart (a test compares the committed copy with a fresh one).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from types import ModuleType

from pagefs.spec import (
    caching,
    codec,
    datatypes,
    examples,
    files,
    guests,
    host,
    mappings,
    memory,
    namespace,
    outcomes,
    properties,
    rules,
    session,
    special,
    times,
    tree,
)
from pagefs.spec.registry import REGISTRY, Operation

CONCERNS: tuple[tuple[str, ModuleType], ...] = (
    ("Session", session),
    ("Namespace", namespace),
    ("Files and handles", files),
    ("Links, special files, extended attributes, space", special),
    ("Mappings", mappings),
    ("Guest memory", memory),
    ("Host operations", host),
)

RULE_MODULES: tuple[tuple[str, ModuleType], ...] = (
    ("Errno rules of a guest's session", guests),
    ("The host's tree", tree),
    ("Small rules", rules),
    ("Outcomes", outcomes),
    ("Caching guests (pagefs-host --cache)", caching),
)

STATE_CLASSES = ("Config", "Inode", "Node", "Handle", "MappedRange", "Guest", "State")
RESULT_CLASSES = ("Attr", "Mtime", "Entry", "Created", "DirEntry", "StatFs", "InitInfo",
                  "Ok", "Err", "Fault", "Outcome")


def split_doc(obj: object) -> tuple[str, list[str]]:
    """A docstring's prose, and its contract lines (pre:, post:, inv:)."""
    doc = inspect.getdoc(obj) or ""
    prose, contracts = [], []
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.startswith(("pre:", "post:", "post[", "inv:", "raises:")):
            contracts.append(stripped)
        else:
            prose.append(line)
    return "\n".join(prose).strip(), contracts


def _paragraphs(text: str) -> str:
    """Join a docstring's wrapped lines into Markdown paragraphs."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())


def _contracts(lines: list[str]) -> list[str]:
    if not lines:
        return []
    return ["", "Contracts (checked by CrossHair):", ""] + [f"- `{c}`" for c in lines]


def _signature(op: Operation) -> str:
    params = ", ".join(p.name + ("?" if p.optional else "") for p in op.params)
    return f"{op.name}({params})"


def _operation(op: Operation) -> list[str]:
    prose, contracts = split_doc(op.function)
    opcode = f" — FUSE opcode {op.opcode}" if op.opcode is not None else ""
    kinds = ", ".join(f"`{p.name}`: {p.kind}{' or none' if p.optional else ''}"
                      for p in op.params)
    return [f"### {op.name}", "", f"`{_signature(op)}`{opcode}. Parameters: {kinds}.", "",
            _paragraphs(prose), *_contracts(contracts), ""]


def _dataclass(name: str) -> list[str]:
    cls = getattr(datatypes, name)
    prose, _ = split_doc(cls)
    fields = ", ".join(f"`{f.name}`" for f in dataclasses.fields(cls))
    return [f"- **{name}**({fields}): {' '.join(prose.split())}"]


def _rule(function: object) -> list[str]:
    prose, contracts = split_doc(function)
    name = getattr(function, "__name__", "")
    return [f"#### `{name}`", "", _paragraphs(prose), *_contracts(contracts), ""]


def _public_functions(module: ModuleType) -> list[object]:
    return [f for name, f in vars(module).items()
            if inspect.isfunction(f) and f.__module__ == module.__name__
            and not name.startswith("_") and inspect.getdoc(f)]


def render() -> str:
    """The whole semantics document, as Markdown."""
    import pagefs.spec as package

    out = ["# pagefs semantics", "",
           "_Generated from `pagefs.spec` by `python -m pagefs.spec.document` (`make docs`); "
           "do not edit by hand._", "",
           _paragraphs(inspect.getdoc(package) or ""), "",
           "## State and identifiers", "", _paragraphs(split_doc(datatypes)[0]), ""]
    for name in STATE_CLASSES:
        out += _dataclass(name)
    out += ["", "## Results", ""]
    for name in RESULT_CLASSES:
        out += _dataclass(name)
    out += ["", "Errnos (Linux numbers): " + ", ".join(
        f"{e.name} {e.value}" for e in datatypes.Errno) + ".", ""]
    out += ["## Named properties", "", _paragraphs(split_doc(properties)[0]), ""]
    for prop in properties.PROPERTIES:
        out += [f"### {prop.name}", "", prop.definition, ""]
        for form, predicate in (("Invariant", prop.invariant), ("Step", prop.step)):
            if predicate is not None:
                out += [f"- {form} (`{predicate.__name__}`): "
                        f"{_paragraphs(split_doc(predicate)[0])}"]
        out += [""]
    out += ["## Operations", "",
            "| operation | kind | concern | FUSE opcode | parameters |",
            "|---|---|---|---|---|"]
    for op in REGISTRY.values():
        out += [f"| {op.name} | {op.kind} | {op.concern} | {op.opcode or ''} | "
                f"{', '.join(p.name for p in op.params)} |"]
    out += ["", "Each operation's contract `lawful(state, op, args, __return__)` says: "
            + _paragraphs(split_doc(outcomes.lawful)[0]) + " `sound` means: "
            + _paragraphs(split_doc(outcomes.sound)[0]), ""]
    for title, module in CONCERNS:
        out += [f"## {title}", "", _paragraphs(split_doc(module)[0]), ""]
        for op in REGISTRY.values():
            if op.function.__module__ == module.__name__:
                out += _operation(op)
    out += ["## Worked examples", "", _paragraphs(split_doc(examples)[0]), "",
            "Each starts from a 20-byte file `f` (one full page and 4 bytes of the next), "
            "looked up by both guests (nodeid 2 in each).", ""]
    for example in examples.EXAMPLES:
        out += [f"### {example.title}", "",
                f"{example.shows} ({', '.join(example.properties)}"
                f"{'; read-only export' if example.read_only else ''})", "",
                "| # | call | allowed results |", "|---|---|---|"]
        for number, ((name, args), results) in enumerate(examples.run(example), 1):
            call = examples.format_call(name, args)
            allowed = " or ".join(examples.describe(name, r) for r in results)
            out += [f"| {number} | `{call}` | {allowed} |"]
        out += [""]
    out += ["## Rules the operations share", ""]
    for title, module in RULE_MODULES:
        out += [f"### {title}", "", _paragraphs(split_doc(module)[0]), ""]
        for function in _public_functions(module):
            out += _rule(function)
    out += ["## Comparing a real system with the spec", "",
            "### Times", "", _paragraphs(split_doc(times)[0]), "",
            "### JSON", "", _paragraphs(split_doc(codec)[0]), "",
            "## Out of scope", "",
            "Permissions by mode bits for different users: every guest acts as the files' "
            "owner, so `mode` is stored and reported but never enforced (ACCESS-MODE is "
            "about a handle's access mode). Also left out: locks, atime and ctime, "
            "attributes outside `user.` (never the guest's), and the steps of caching "
            "guests (a guest here asks the host every time; what a caching guest keeps of "
            "the properties is stated under \"Caching guests\").", ""]
    text = "\n".join(out)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
