"""The refinement's spec side checked against `pagefs.spec`, on every reachable state.

``refinement.py`` proves that the design's bytes and sizes after each step are what
``EFFECTS`` says the spec's write and resize rules make of them: a z3 restatement of
the spec. This closes the gap between the restatement and the spec users read: on every
state pair the exhaustive enumeration reaches within its bound (``enumeration.py``), each
one-byte data request of ``CALLS`` runs through ``pagefs.spec``, and where the spec lets
it succeed, the restatement evaluated on the design's concrete state must give the
spec's outcome byte for byte (every live file, every position the pool reaches, the
stored tail of the last page included) and size for size. Errnos, handles, nodeids and
windows are not the restatement's business: the same enumeration relates them between
the design and the spec directly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import z3

from pagefs.proofs import design as d
from pagefs.proofs import enumeration, refinement
from pagefs.proofs.design import Byte, Frame, Guest, Handle, Inode, Nodeid, Offset, Size, Slot
from pagefs.proofs.refinement import EFFECTS
from pagefs.proofs.table import Row
from pagefs.proofs.tie import Design
from pagefs.spec import REGISTRY, State
from pagefs.spec.datatypes import FileKind, Ok

PAGE = enumeration.PAGE
CALLS: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("host.write", (b"a", PAGE - 1, b"\x09")),
    ("host.write", (b"a", PAGE + 1, b"\x0a")),
    ("WRITE", (0, 1, PAGE, b"\x0b")),
    ("host.truncate", (b"a", 1)),
    ("host.truncate", (b"a", PAGE + 1)),
    ("SETATTR", (1, 2, PAGE - 1, None, None)),
    ("STORE", (0, PAGE - 1, b"\x0c")),
)
"""One-byte data requests (the restatement's unit) and resizes, both guests'."""


def _design_args(design: Design, name: str, args: tuple[Any, ...]
                 ) -> list[z3.ExprRef] | None:
    """The restatement's arguments for a spec call, or None when the design has no such
    target (the spec refuses it too, and then nothing is compared)."""
    c = d.val
    if name == "host.write":
        i = design.inode_at(args[0])
        return None if not isinstance(i, int) or not i else [
            c(Inode, i), c(Size, args[1]), c(Byte, args[2][0]), c(Frame, 0)]
    if name == "host.truncate":
        i = design.inode_at(args[0])
        return None if not isinstance(i, int) or not i else [c(Inode, i), c(Size, args[1])]
    if name == "WRITE":
        g, fh, pos, data = args
        return [c(Guest, g), c(Handle, fh), c(Size, pos), c(Byte, data[0]), c(Frame, 0)]
    if name == "SETATTR":
        return [c(Guest, args[0]), c(Nodeid, args[1]), c(Size, args[2])]
    if name == "STORE":
        g, w, data = args
        return [c(Guest, g), c(Slot, w // PAGE), c(Offset, w % PAGE), c(Byte, data[0]),
                c(Frame, 0)]
    raise KeyError(name)


def _body(state: State, ino: int) -> tuple[bytes, int]:
    inode = state.inodes[ino]
    tail = inode.tail + bytes(-len(inode.data) % state.config.page_size - len(inode.tail))
    return inode.data + tail, len(inode.data)


def disagreements(specs: frozenset[State], design: Design) -> list[str]:
    """Where the restatement and the spec differ after any call of ``CALLS``."""
    spec = min(specs, key=repr)  # any agreeing spec state: they agree on data
    found = []
    for name, args in CALLS:
        zargs = _design_args(design, name, args)
        outcomes = REGISTRY[name](spec, *args)
        done = [o for o in outcomes if isinstance(o.result, Ok)]
        if zargs is None or not done:
            continue
        after = done[0].state
        for ino, inode in after.inodes.items():
            if inode.kind is not FileKind.REG or ino not in spec.inodes:
                continue
            body, size = _body(after, ino)
            for q in sorted(enumeration.POSITIONS):
                byte, new_size = EFFECTS[name](design.state, zargs, d.val(Inode, ino),
                                               d.val(Size, q))
                want = body[q] if q < len(body) else 0
                got_byte, got_size = design.get(byte), design.get(new_size)
                if (got_byte, got_size) != (want, size):
                    found.append(f"{name}{args}: inode {ino} byte {q}: restatement "
                                 f"({got_byte}, size {got_size}), spec ({want}, size {size})")
                    break
    return found


@dataclass
class Checked:
    states: int
    comparisons: int
    seconds: float
    first: str = ""


def check(k: int = 2) -> Checked:
    """Compare the restatement with the spec on every state the enumeration reaches with
    programs of up to ``k`` calls."""
    start = time.monotonic()
    states = 0
    problems: list[str] = []

    def visit(specs: frozenset[State], design: Design) -> None:
        nonlocal states
        states += 1
        if not problems:
            problems.extend(disagreements(specs, design))

    enumeration.enumerate_programs(k, visit=visit)
    return Checked(states, states * len(CALLS), time.monotonic() - start,
                   problems[0] if problems else "")


K_QUICK = 2  # ~54 states; k=3 (~630 states) with --thorough
K_THOROUGH = 3


def rows(quick: bool = True) -> Iterator[Row]:
    """The restatement ≡ spec row, and a seeded bug in the restatement it must catch."""
    k = K_QUICK if quick else K_THOROUGH
    c = check(k)
    yield Row("refinement", "EFFECTS ≡ pagefs.spec", f"exhaustive k={k}",
              "agree" if not c.first else "FAIL", not c.first, c.seconds,
              c.first or f"{c.comparisons} one-byte writes and resizes on all {c.states} "
                          f"states of the design = spec enumeration's programs of up to {k} "
                          f"calls: bytes (tail included) and sizes agree")
    good = EFFECTS["WRITE"]
    EFFECTS["WRITE"] = lambda s, a, i, q: (refinement.abstract(s, i, q), good(s, a, i, q)[1])
    try:
        bug = check(k)
    finally:
        EFFECTS["WRITE"] = good
    yield Row("refinement", "seeded bug: WRITE's byte left out", f"exhaustive k={k}",
              "caught" if bug.first else "not caught", bool(bug.first), bug.seconds,
              bug.first or "the restatement check cannot see a wrong restatement")
