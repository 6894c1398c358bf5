"""Worked examples: short scenarios at the edges, run through the spec.

The semantics document shows each with the results the spec allows at every step, and
the tests check them, so the examples can never disagree with the rules. They use the
small geometry (16-byte pages, 32-byte ranges, 3-range windows, two guests).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pagefs.spec.datatypes import (
    O_CREAT,
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    Attr,
    Created,
    Entry,
    Err,
    Fault,
    Ok,
    Outcome,
    Result,
    State,
    initial_state,
)
from pagefs.spec.explore import SMALL
from pagefs.spec.registry import REGISTRY

Call = tuple[str, tuple[object, ...]]

SETUP: tuple[Call, ...] = (
    ("host.create", (b"f", 0o644)),
    ("host.write", (b"f", 0, b"ABCDEFGHIJKLMNOPQRST")),
    ("LOOKUP", (0, 1, b"f")),
    ("LOOKUP", (1, 1, b"f")),
)
"""Every example starts here: a 20-byte file `f` (one full page and 4 bytes of the next),
looked up by both guests (nodeid 2 in each)."""


@dataclass(frozen=True)
class Example:
    """A titled scenario: what it shows, the properties at stake, and its calls."""

    title: str
    shows: str
    properties: tuple[str, ...]
    calls: tuple[Call, ...]
    read_only: bool = False


EXAMPLES: tuple[Example, ...] = (
    Example("A host write is seen through a mapping at once",
            "Guest 0 maps the file read-only; the host writes; the next load shows it.",
            ("COH-READ",),
            (("OPEN", (0, 2, O_RDONLY)), ("SETUPMAPPING", (0, 1, 0, 32, False, 0)),
             ("LOAD", (0, 0, 4)), ("host.write", (b"f", 2, b"xy")), ("LOAD", (0, 0, 4)))),
    Example("A store is the host's data and every peer's, without msync",
            "Both guests map the file writable, at different window offsets.",
            ("COH-WRITE", "COH-PEER"),
            (("OPEN", (0, 2, O_RDWR)), ("SETUPMAPPING", (0, 1, 0, 32, True, 0)),
             ("OPEN", (1, 2, O_RDWR)), ("SETUPMAPPING", (1, 1, 0, 32, True, 64)),
             ("STORE", (0, 1, b"!!")), ("host.read", (b"f", 0, 4)), ("LOAD", (1, 64, 4)))),
    Example("The host truncates a mapped file",
            "Pages wholly beyond the new end fault for that access only; the rest of the "
            "last page reads as zeros; extending again shows zeros, never the old bytes.",
            ("EOF-FAULT",),
            (("OPEN", (0, 2, O_RDONLY)), ("SETUPMAPPING", (0, 1, 0, 32, False, 0)),
             ("host.truncate", (b"f", 10)), ("LOAD", (0, 16, 1)), ("LOAD", (0, 8, 8)),
             ("host.truncate", (b"f", 20)), ("LOAD", (0, 8, 4)))),
    Example("A mapping outlives RELEASE, and the file outlives unlink",
            "The handle is released and the nodeid forgotten; the host unlinks the name. "
            "The mapping still shows the data until it is removed.",
            ("LIFETIME",),
            (("OPEN", (0, 2, O_RDWR)), ("SETUPMAPPING", (0, 1, 0, 32, True, 0)),
             ("RELEASE", (0, 1)), ("RELEASE", (0, 1)), ("FORGET", (0, 2, 1)),
             ("host.unlink", (b"f",)), ("LOAD", (0, 0, 4)), ("REMOVEMAPPING", (0, 0, 32)),
             ("LOAD", (0, 0, 4)))),
    Example("A read-only handle cannot map writable",
            "The same handle maps read-only; stores through that mapping fault.",
            ("ACCESS-MODE",),
            (("OPEN", (0, 2, O_RDONLY)), ("SETUPMAPPING", (0, 1, 0, 32, True, 0)),
             ("SETUPMAPPING", (0, 1, 0, 32, False, 0)), ("STORE", (0, 0, b"x")),
             ("WRITE", (0, 1, 0, b"x")))),
    Example("FORGET to zero, then the stale nodeid",
            "After FORGET the nodeid means nothing, even when the name is looked up again.",
            ("NODEID",),
            (("FORGET", (0, 2, 1)), ("GETATTR", (0, 2)), ("LOOKUP", (0, 1, b"f")))),
    Example("RENAME over an open file",
            "Guest 0 has `f` open; guest 1 creates `g` and renames it over `f`.",
            ("LIFETIME", "NAMESPACE"),
            (("OPEN", (0, 2, O_RDONLY)), ("CREATE", (1, 1, b"g", O_RDWR, 0o644)),
             ("WRITE", (1, 1, 0, b"new")), ("RENAME", (1, 1, b"g", 1, b"f", 0)),
             ("READ", (0, 1, 0, 4)), ("host.read", (b"f", 0, 4)))),
    Example("A read-only export",
            "Every write path is EROFS; the host still writes, and guests see it.",
            ("RO-EXPORT",),
            (("OPEN", (0, 2, O_RDWR)), ("CREATE", (0, 1, b"n", O_RDWR, 0o644)),
             ("UNLINK", (0, 1, b"f")), ("SETATTR", (0, 2, 0, None, None)),
             ("OPEN", (0, 2, O_RDONLY)), ("SETUPMAPPING", (0, 1, 0, 32, True, 0)),
             ("host.write", (b"f", 0, b"host")), ("READ", (0, 1, 0, 4))),
            read_only=True),
)


def start(example: Example) -> State:
    """The state after SETUP, in the example's export."""
    state = initial_state(replace(SMALL, read_only=example.read_only))
    for name, args in SETUP:
        state = REGISTRY[name](state, *args)[0].state
    return state


def run(example: Example) -> list[tuple[Call, tuple[Result, ...]]]:
    """Each call with the results the spec allows; the run goes on from the first
    successful outcome (or the first outcome when none succeeds)."""
    state = start(example)
    steps = []
    for name, args in example.calls:
        outcomes = REGISTRY[name](state, *args)
        steps.append(((name, args), tuple(o.result for o in outcomes)))
        state = _next(outcomes).state
    return steps


def _next(outcomes: tuple[Outcome, ...]) -> Outcome:
    return next((o for o in outcomes if isinstance(o.result, Ok)), outcomes[0])


_FLAG_NAMES = ((O_TRUNC, "O_TRUNC"), (O_EXCL, "O_EXCL"), (O_CREAT, "O_CREAT"))


def format_call(name: str, args: tuple[object, ...]) -> str:
    """A call as `OPEN(guest=0, nodeid=2, flags=O_RDWR)`: open flags by name, modes in
    octal, other values as Python literals."""
    parts = []
    for param, value in zip(REGISTRY[name].params, args, strict=True):
        if param.kind == "OpenFlags" and isinstance(value, int):
            names = [("O_RDONLY", "O_WRONLY", "O_RDWR", "3")[value & 3]]
            names += [flag for bit, flag in _FLAG_NAMES if value & bit]
            shown = "|".join(names)
        elif param.kind == "Mode" and isinstance(value, int):
            shown = oct(value)
        else:
            shown = repr(value)
        parts.append(f"{param.name}={shown}")
    return f"{name}({', '.join(parts)})"


def describe(name: str, result: Result) -> str:
    """A result in a line: `b'ABxy'`, `fh 1`, `nodeid 3 (ino 2, size 20)`, `EACCES`."""
    if isinstance(result, Fault):
        return "FAULT"
    if isinstance(result, Err):
        return result.errno.name
    value = result.value
    if isinstance(value, Entry):
        return f"nodeid {value.nodeid} (ino {value.attr.ino}, size {value.attr.size})"
    if isinstance(value, Created):
        return f"nodeid {value.entry.nodeid}, fh {value.fh}"
    if isinstance(value, Attr):
        return f"size {value.size}, mode {value.mode:o}"
    if isinstance(value, int) and name in ("OPEN", "OPENDIR"):
        return f"fh {value}"
    if isinstance(value, int):
        return f"{value} bytes"
    return "ok" if value is None else repr(value)
