"""Design ≡ spec, exhaustively: every program of up to k requests over a small pool.

The tie (``tie.py``) runs one request through ``pagefs.spec`` and through the z3
transitions evaluated on concrete states. This module runs *every* program of up to k
calls drawn from ``ALPHABET`` (two guests and the host; each call a request with
arguments from a small pool chosen so that most of them name something that exists,
and so that each rule's errors are reachable: EACCES, EBADF, EFBIG, ESTALE, EIO, ...),
from the spec's initial state. After each call:

- the design's answer must be one of the results the spec allows (values compared, an
  errno one of the spec's errno set, a fault a fault);
- the spec's own contracts (every `post:` of the operation) must hold on the call;
- the design's state must agree with a spec state of an outcome giving that answer, on
  every inode (kind, size, entries, bytes at every position the pool can reach and their
  neighbours), every guest's connection, counters, nodeids with lookup counts, handles
  with their access, and window ranges.

The spec may allow several outcomes; the enumeration keeps every spec state that agrees.

**Pruning, and why it is sound.** Both sides are deterministic functions of their state
and the call. So two programs that reach the same pair (set of agreeing spec states,
complete design state) have the same futures, and only the first, shortest one is
extended: a breadth-first search over that pair. The design state is keyed by z3's ids
of all its fields' terms (frames, entries, ghosts included); z3 hash-conses terms, so
equal ids are equal terms, and the search keeps every keyed term alive so that no id
is reused: keys can tell equal states apart, never merge different ones. And the two
guests start alike and both sides treat them alike, so a program whose first guest
request is guest 1's is guest 0's program with the guests renamed: only programs that
name guest 0 first are run. So every program of up to k calls is checked, although
only one program per reached state is extended; the row reports both numbers.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import z3

from pagefs.proofs import contracts, transitions
from pagefs.proofs.design import State as DesignState
from pagefs.proofs.table import Row
from pagefs.proofs.tie import Design, spec_view
from pagefs.spec import REGISTRY, Config, State, initial_state
from pagefs.spec.datatypes import O_CREAT, O_RDONLY, O_RDWR, O_WRONLY, Outcome

PAGE = 4096
RANGE = 2 << 20
MAX_SIZE = 2 * PAGE  # small, so the size limit (EFBIG) is one request away
CONFIG = Config(window_ranges=1, max_size=MAX_SIZE)

Call = tuple[str, tuple[Any, ...]]  # an operation and its arguments, typed as its parameters


def _per_guest(make: Callable[[int], Call]) -> list[Call]:
    return [make(g) for g in (0, 1)]


def alphabet() -> tuple[Call, ...]:
    """The calls a program is made of. Nodeid 2 and handle 1 are what a guest's first
    LOOKUP or CREATE and first OPEN return; 4095 straddles a page boundary; MAX_SIZE - 1
    with two bytes crosses the size limit."""
    calls: list[Call] = [
        ("host.create", (b"a", 0o644)),
        ("host.write", (b"a", PAGE - 1, b"\x01\x02")),
        ("host.write", (b"a", MAX_SIZE - 1, b"\x03\x04")),
        ("host.truncate", (b"a", 1)),
        ("host.truncate", (b"a", MAX_SIZE + 1)),
        ("host.unlink", (b"a",)),
    ]
    for make in (
        lambda g: ("LOOKUP", (g, 1, b"a")),
        lambda g: ("FORGET", (g, 2, 1)),
        lambda g: ("CREATE", (g, 1, b"a", O_CREAT | O_WRONLY, 0o644)),
        lambda g: ("CREATE", (g, 1, b"a", O_CREAT | O_RDWR, 0o644)),
        lambda g: ("OPEN", (g, 2, O_RDONLY)),
        lambda g: ("RELEASE", (g, 1)),
        lambda g: ("READ", (g, 1, PAGE - 1, 2)),
        lambda g: ("WRITE", (g, 1, MAX_SIZE - 1, b"\x05\x06")),
        lambda g: ("SETATTR", (g, 2, PAGE + 1, None, None)),
        lambda g: ("SETUPMAPPING", (g, 1, 0, RANGE, False, 0)),
        lambda g: ("SETUPMAPPING", (g, 1, 0, RANGE, True, 0)),
        lambda g: ("LOAD", (g, PAGE - 1, 2)),
        lambda g: ("STORE", (g, PAGE, b"\x07")),
        lambda g: ("UNLINK", (g, 1, b"a")),
        lambda g: ("DESTROY", (g,)),
    ):
        calls += _per_guest(make)
    return tuple(calls)


ALPHABET = alphabet()
# Every file position a call can reach, and its neighbours: where bytes are compared.
POSITIONS = frozenset(q for p in (0, PAGE - 1, PAGE, PAGE + 1, MAX_SIZE - 1, MAX_SIZE)
                      for q in (p - 1, p, p + 1) if q >= 0)


@dataclass
class Mismatch:
    program: tuple[Call, ...]
    why: str

    def __str__(self) -> str:
        steps = "; ".join(f"{name}{args}" for name, args in self.program)
        return f"{len(self.program)}-step program: {steps}\n  {self.why}"


@dataclass
class Result:
    depth: int
    programs: int  # programs of up to ``depth`` calls, every one checked
    states: int  # distinct (spec, design) states reached
    steps: int  # calls evaluated on both sides
    conditions: int  # the spec's `post:` conditions evaluated on those calls
    seconds: float
    mismatch: Mismatch | None = None


def programs_up_to(k: int, width: int = len(ALPHABET)) -> int:
    """How many programs of 1..k calls an alphabet of ``width`` makes."""
    return sum(width ** j for j in range(1, k + 1))


def _design_key(design: Design) -> tuple[int, ...]:
    """The design state's identity: z3 hash-conses terms, so two fields have one id
    exactly when they are the same term (the caller keeps the terms alive, so an id is
    never reused for another term)."""
    return tuple(getattr(design.state, f.name).get_id() for f in fields(design.state))


def _guest(call: Call) -> int | None:
    name, args = call
    return None if name.startswith("host.") else args[0]


def _step(specs: frozenset[State], design: Design, call: Call
          ) -> tuple[frozenset[State], Design] | str:
    """One call on both sides: the agreeing spec states and the design after it, or why
    they disagree."""
    name, args = call
    after = copy.copy(design)
    answer = after.apply(name, args)
    outcomes: list[Outcome] = []
    function = REGISTRY[name].function
    for s in specs:
        got = REGISTRY[name](s, *args)
        false = contracts.broken(function, (s, *args), got)
        if false:
            return f"the spec's own contract of {name} is false here: {false[0]}"
        outcomes += got
    allowed = [o for o in outcomes if answer.matches(o.result)]
    if not allowed:
        return f"the design answered {answer}; the spec allows " \
               f"{sorted({str(o.result) for o in outcomes})}"
    if after.state is design.state and all(o.state in specs for o in allowed):
        return frozenset(o.state for o in allowed), after  # nothing moved: agreed before
    mine = after.view()
    agreeing = frozenset(o.state for o in allowed if spec_view(o.state, after.touched) == mine)
    if not agreeing:
        theirs = spec_view(allowed[0].state, after.touched)
        differ = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
        return f"same answer {answer}, states differ (design, spec): {differ}"
    return agreeing, after


def enumerate_programs(k: int, calls: Iterable[Call] = ALPHABET, config: Config = CONFIG,
                       visit: Callable[[frozenset[State], Design], None] | None = None
                       ) -> Result:
    """Check every program of up to ``k`` calls; stop at the first (shortest) mismatch.
    ``visit`` is shown every distinct state pair reached (the initial one included)."""
    calls = tuple(calls)
    start = time.monotonic()
    design = Design(config)
    design.touched = set(POSITIONS)
    specs = frozenset({initial_state(config)})
    seen = {(specs, _design_key(design), False)}
    # (program, agreeing spec states, design, whether the program has named a guest)
    frontier: list[tuple[tuple[Call, ...], frozenset[State], Design, bool]] = [
        ((), specs, design, False)]
    steps = conditions = 0
    if visit:
        visit(specs, design)
    alive = [design.state]  # keeps every keyed term alive, so its id stays its own
    for depth in range(1, k + 1):
        nxt = []
        for program, specs, design, named in frontier:
            for call in calls:
                guest = _guest(call)
                if not named and guest == 1:
                    continue  # the same program with guests renamed is checked
                steps += 1
                out = _step(specs, design, call)
                if isinstance(out, str):
                    return Result(depth, programs_up_to(depth - 1, len(calls)), len(seen), steps,
                                  conditions, time.monotonic() - start,
                                  Mismatch(program + (call,), out))
                conditions += contracts.count(REGISTRY[call[0]].function) * len(specs)
                key = (out[0], _design_key(out[1]), named or guest is not None)
                if key not in seen:
                    seen.add(key)
                    alive.append(out[1].state)
                    if visit:
                        visit(*out)
                    nxt.append((program + (call,), *out, key[2]))
        frontier = nxt
    return Result(k, programs_up_to(k, len(calls)), len(seen), steps, conditions,
                  time.monotonic() - start)


_SETUPMAPPING = transitions.setupmapping


def old_setupmapping(s: DesignState, g: z3.ExprRef, h: z3.ExprRef, fpage: z3.ExprRef,
                     count: z3.ExprRef, writable: z3.ExprRef, start: z3.ExprRef
                     ) -> transitions.Step:
    """The design's SETUPMAPPING before issue 12, which asked only for write access (a
    test puts it in place of the current one and expects a mismatch)."""
    return _SETUPMAPPING(s, g, h, fpage, count, writable, start, check_read=False)


# ---------------------------------------------------------------- every operation's contracts

# Arguments by the registry's parameter kinds (an operation's own pool first): each
# chosen so that requests can succeed and fail (nodeid 2 and handle 1 are the first a
# guest gets; "a/b" has a parent that may be a file; 4095 straddles a page).
_POOL_BY_KIND: dict[str, tuple[object, ...]] = {
    "GuestId": (0, 1), "NodeId": (1, 2), "Fh": (1,), "Name": (b"a",), "Path": (b"a", b"a/b"),
    "Target": (b"a",), "Mode": (0o644,), "Length": (2,), "Offset": (PAGE - 1,),
    "WindowOffset": (PAGE - 1,), "Data": (b"\x01\x02",), "OpenFlags": (O_RDWR,),
    "bool": (False,), "int": (1,), "RenameFlags": (0,), "TimeNs": (None,),
    "FileMode": (0o100644, 0o020644), "XattrName": (b"user.a",), "XattrFlags": (0,),
    "FallocMode": (0,),
}
_POOL_BY_PARAM: dict[tuple[str, str], tuple[object, ...]] = {
    ("SETATTR", "size"): (None, PAGE + 1), ("SETATTR", "mode"): (None,),
    ("CREATE", "flags"): (O_CREAT | O_WRONLY, O_CREAT | O_RDWR),
    ("OPEN", "flags"): (O_RDONLY, O_RDWR),
    ("SETUPMAPPING", "foffset"): (0,), ("SETUPMAPPING", "length"): (RANGE,),
    ("SETUPMAPPING", "moffset"): (0,), ("SETUPMAPPING", "writable"): (False, True),
    ("REMOVEMAPPING", "moffset"): (0,), ("REMOVEMAPPING", "length"): (RANGE,),
    ("RENAME", "newparent"): (1,), ("RENAME", "newname"): (b"b",),
    ("host.rename", "new"): (b"b",), ("host.truncate", "size"): (1,),
}


def contract_alphabet() -> tuple[Call, ...]:
    """Every operation of the spec, with every combination of its parameters' pools."""
    from itertools import product

    calls: list[Call] = []
    for op in REGISTRY.values():
        missing = [p.kind for p in op.params if p.kind not in _POOL_BY_KIND]
        if missing:
            raise LookupError(f"{op.name}: no argument pool for parameter kind {missing[0]}; "
                              f"give it one in enumeration._POOL_BY_KIND")
        pools = [_POOL_BY_PARAM.get((op.name, p.name), _POOL_BY_KIND[p.kind]) for p in op.params]
        calls += [(op.name, args) for args in product(*pools)]
    return tuple(calls)


CONTRACTS_K_QUICK = 3  # ~21,000 calls, seconds
CONTRACTS_K_THOROUGH = 4  # ~190,000 calls, about a minute


def contract_operations() -> frozenset[str]:
    return frozenset(name for name, _ in contract_alphabet())



def enumerate_contracts(k: int = CONTRACTS_K_QUICK, calls: Iterable[Call] | None = None,
                        config: Config = CONFIG) -> Result:
    """Evaluate every `post:` of every spec operation on every program of up to ``k`` calls
    (spec only: every outcome followed, states deduplicated breadth-first as above)."""
    calls = contract_alphabet() if calls is None else tuple(calls)
    start = time.monotonic()
    first = initial_state(config)
    seen = {first}
    frontier: list[tuple[tuple[Call, ...], State]] = [((), first)]
    steps = conditions = 0
    for depth in range(1, k + 1):
        nxt = []
        for program, state in frontier:
            for call in calls:
                name, args = call
                steps += 1
                function = REGISTRY[name].function
                outcomes = REGISTRY[name](state, *args)
                false = contracts.broken(function, (state, *args), outcomes)
                conditions += contracts.count(function)
                if false:
                    return Result(depth, programs_up_to(depth - 1, len(calls)), len(seen),
                                  steps, conditions, time.monotonic() - start,
                                  Mismatch(program + (call,), f"contract false: {false[0]}"))
                for o in outcomes:
                    if o.state not in seen:
                        seen.add(o.state)
                        nxt.append((program + (call,), o.state))
        frontier = nxt
    return Result(k, programs_up_to(k, len(calls)), len(seen), steps, conditions,
                  time.monotonic() - start)


K_QUICK = 4  # ~3 minutes on one shared core (proofs/README.md)
K_THOROUGH = 5


def _swapped(namespace: dict[str, Any], key: str, variant: Callable[[Any], Any],
             check: Callable[[], Result]) -> Callable[[], Result]:
    """`check` run with `namespace[key]` (a module's attribute or a registry entry) replaced
    by `variant` of it, a seeded bug, and put back afterwards."""
    def go() -> Result:
        correct = namespace[key]
        namespace[key] = variant(correct)
        try:
            return check()
        finally:
            namespace[key] = correct
    return go


def _seeded() -> Iterator[tuple[str, str, Callable[[], Result]]]:
    """Design bugs the enumeration must catch: the SETUPMAPPING of before issue 12, and a
    WRITE that forgets the size limit."""
    def run(attr: str, buggy: Callable[..., transitions.Step]) -> Callable[[], Result]:
        return _swapped(vars(transitions), attr, lambda _: buggy, lambda: enumerate_programs(3))
    yield ("ACCESS-MODE", "map-without-read-access", run("setupmapping", old_setupmapping))
    write = transitions.write
    yield ("SIZE-LIMIT", "write-past-size-limit",
           run("write", lambda *a: write(*a, limit=False)))


def _with_seeded(name: str, function: Callable[..., object], k: int) -> Callable[[], Result]:
    """The contracts check with one operation replaced by a seeded-bug variant."""
    from dataclasses import replace

    return _swapped(REGISTRY, name, lambda correct: replace(correct, function=function),
                    lambda: enumerate_contracts(k))


def _check_row(prop: str, subject: str, k: int, r: Result, held: str, detail: str) -> Row:
    """The row of a check that must find nothing; a mismatch is shown in full on stderr."""
    if r.mismatch:
        print(r.mismatch, file=sys.stderr)
        detail = str(r.mismatch).replace("\n", " |")
    return Row(prop, subject, f"exhaustive k={k}", "FAIL" if r.mismatch else held,
               r.mismatch is None, r.seconds, detail)


def _seeded_row(prop: str, name: str, k: int, bug: Result, unseen: str) -> Row:
    """The row of a seeded bug the check must catch; `unseen` says what a miss means."""
    if bug.mismatch:
        print(f"seeded bug '{name}' caught:\n{bug.mismatch}", file=sys.stderr)
    return Row(prop, f"seeded bug: {name}", f"exhaustive k={k}",
               "caught" if bug.mismatch else "not caught", bug.mismatch is not None,
               bug.seconds, f"{len(bug.mismatch.program)}-step program" if bug.mismatch
               else unseen)


def contract_rows(k: int = CONTRACTS_K_QUICK) -> Iterator[Row]:
    """Every operation's contracts on every program of the bound, and two seeded bugs
    (CrossHair's own probes for the modules it reaches least) that the check must catch."""
    from pagefs.proofs import crosshair_seeded as seeded

    r = enumerate_contracts(k)
    ops = len(contract_operations())
    yield _check_row("contracts", f"every operation ({ops})", k, r, "hold",
                     f"{r.programs} programs of 1..{k} calls from {len(contract_alphabet())} "
                     f"({ops} operations, 2 guests + host) checked; {r.states} distinct "
                     f"states, {r.steps} calls run, {r.conditions} post-conditions "
                     "evaluated true")
    for name, function in (("SETUPMAPPING", seeded.seeded_mappings),
                           ("host.read", seeded.seeded_host)):
        yield _seeded_row("contracts", function.__name__, k, _with_seeded(name, function, k)(),
                          "every program kept the contract: the check cannot see it")


def rows(quick: bool = True) -> Iterator[Row]:
    """The exhaustive design ≡ spec row, the seeded design bugs it must catch, and the
    contracts check over every operation."""
    k = K_QUICK if quick else K_THOROUGH
    r = enumerate_programs(k)
    yield _check_row("design ≡ spec", "every request", k, r, "agree",
                     f"{r.programs} programs of 1..{k} calls from {len(ALPHABET)} "
                     f"(2 guests + host) checked; {r.states} distinct states, {r.steps} "
                     f"calls run, {r.conditions} spec post-conditions evaluated true")
    for prop, name, go in _seeded():
        bug = go()
        yield _seeded_row(prop, name, 3, bug,
                          f"{bug.programs} programs agree: the enumeration cannot see it")
    yield from contract_rows(CONTRACTS_K_QUICK if quick else CONTRACTS_K_THOROUGH)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pagefs.proofs.enumeration",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--contracts", action="store_true",
                        help="the spec-only contracts check over every operation")
    args = parser.parse_args(argv)
    r = enumerate_contracts(args.k) if args.contracts else enumerate_programs(args.k)
    print(f"k={r.depth}: {r.programs} programs, {r.states} states, {r.steps} steps, "
          f"{r.conditions} conditions, {r.seconds:.1f}s")
    if r.mismatch:
        print(r.mismatch)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
