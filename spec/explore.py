"""Arguments worth trying, and bounded walks through the spec's reachable states.

`candidates` proposes values for an operation's parameters from the current state (the
nodeids and handles guests hold, plus a never-issued one) and from small fixed sets
chosen around the geometry's edges (page and range boundaries, end of file, '.', '..',
'/', NUL, over-long names). `walk` runs seeded random operation sequences and `sweep`
tries every candidate call from given states, both checking every named property on
every state and step; the spec's self-checks and tests use them, and a conformance
harness can use `candidates` to generate calls.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from pagefs.spec.datatypes import (
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    Config,
    FileKind,
    HandleKind,
    Outcome,
    State,
    initial_state,
)
from pagefs.spec.properties import Step, step_violations, violations
from pagefs.spec.registry import REGISTRY, Operation, Param

SMALL = Config(page_size=16, range_size=32, window_ranges=3, guests=2, name_max=6)
"""A geometry small enough to explore: 16-byte pages, 2-page ranges, 3-range windows."""


def host_paths(state: State) -> tuple[bytes, ...]:
    """Every path in the host tree (the root is b""), shortest first."""
    paths: list[bytes] = []
    todo = [(b"", 1)]
    while todo:
        path, ino = todo.pop(0)
        paths.append(path)
        inode = state.inodes[ino]
        if inode.kind is FileKind.DIR:
            for name, target in sorted(inode.entries.items()):
                todo.append((path + b"/" + name if path else name, target))
    return tuple(paths)


MAPPING_OPS = ("SETUPMAPPING", "REMOVEMAPPING")
DIR_HANDLE_OPS = ("READDIR", "RELEASEDIR")
FILE_NODE_OPS = ("OPEN", "READLINK", "SETATTR")


def _values(state: State, param: Param, guest: int | None, op: str | None
            ) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """(usually valid values, edge values) for one parameter of operation `op`."""
    config = state.config
    page, rng = config.page_size, config.range_size
    kind = param.kind
    sessions = state.guests if guest is None else (state.guests[guest],)
    if kind == "GuestId":
        return tuple(range(len(state.guests))), ()
    if kind == "NodeId":
        nodes = {n: node.ino for g in sessions for n, node in g.nodes.items()}
        stale = max(g.next_nodeid for g in sessions)
        dirs = tuple(sorted(n for n, ino in nodes.items()
                            if state.inodes[ino].kind is FileKind.DIR))
        others = tuple(sorted(n for n in nodes if n not in dirs))
        if param.name in ("parent", "newparent") or op == "OPENDIR":
            return dirs, (*others, stale)
        if op in FILE_NODE_OPS and others:
            return others, (*dirs, stale)
        return tuple(sorted(nodes)), (stale,)
    if kind == "Fh":
        wanted = HandleKind.DIR if op in DIR_HANDLE_OPS else HandleKind.FILE
        handles = {fh: h for g in sessions for fh, h in g.handles.items()}
        fitting = tuple(sorted(fh for fh, h in handles.items() if h.kind is wanted))
        other = tuple(sorted(fh for fh, h in handles.items() if h.kind is not wanted))
        return fitting, (*other, max(g.next_fh for g in sessions))
    if kind == "Name":
        return (b"a", b"b", b"d"), (b".", b"..", b"x/y", b"n\0", b"z" * (config.name_max + 1))
    if kind == "Path":
        return (*host_paths(state)[1:], b"a", b"b", b"d", b"d/a"), (b"", b"a/../b")
    if kind == "Target":
        return (b"a",), (b"../../outside", b"")
    if kind == "Offset":
        return (0, page), (rng, 1, page - 1)
    if kind == "Length" and param.name == "size":
        return (5, page + 3, 3 * page), (0, -1)
    if kind == "Length" and op in MAPPING_OPS:
        return (rng, 2 * rng), (0, page, rng + page, -1)
    if kind == "Length":
        return (1, page + 3, rng), (0, page, 2 * rng, -1)
    if kind == "Data":
        return (b"xy", bytes(range(65, 65 + page + 2))), (b"",)
    if kind == "Mode":
        return (0o644, 0o755), ()
    if kind == "OpenFlags":
        return (O_RDONLY, O_RDWR), (O_RDWR | O_TRUNC, O_WRONLY, O_RDWR | O_EXCL, 3)
    if kind == "RenameFlags":
        return (0,), (RENAME_NOREPLACE, RENAME_EXCHANGE, 4)
    if kind == "WindowOffset" and op in ("LOAD", "STORE"):
        mapped = tuple(i * rng + delta for g in sessions for i, m in enumerate(g.window)
                       if m is not None for delta in (0, page + 3))
        if mapped:
            return mapped, (rng - 1, config.window_size - 1, config.window_size, -1)
    if kind == "WindowOffset":
        return (0, rng, page + 3), (rng - 1, rng + page - 2, config.window_size, -1)
    if kind == "TimeNs":
        return (1_700_000_000_000_000_000,), ()
    if kind == "FileMode":
        return (0o010644, 0o100600, 0o140644), (0o020666, 0o060666, 0o040755, 0o120777)
    if kind == "XattrName":
        return (b"user.a", b"user.b"), (b"trusted.a", b"security.capability", b"user.", b"",
                                        b"user." + b"n" * 251)
    if kind == "XattrFlags":
        return (0, 1, 2), (3, 4)
    if kind == "FallocMode":
        return (0, 0x01, 0x03, 0x10), (0x02, 0x08)
    if kind == "bool":
        return (False, True), ()
    return (1,), (2, 0)


def candidates(state: State, param: Param, guest: int | None = None,
               op: str | None = None) -> tuple[object, ...]:
    """Values to try for `param` in `state`: usually valid ones first, then edge cases
    (page and range boundaries, '.', '..', '/', NUL, over-long names, stale ids). With
    `guest`, nodeids and handles are that guest's, plus one it was never given; `op`
    (the operation's name) tunes lengths to what it expects."""
    good, edge = _values(state, param, guest, op)
    return (None, *good, *edge) if param.optional else (*good, *edge)


WEIGHTS: dict[str, int] = {"DESTROY": 1, "INIT": 2, "LOOKUP": 12, "OPEN": 10, "CREATE": 6,
                           "SETUPMAPPING": 12, "LOAD": 10, "STORE": 10, "READ": 5,
                           "WRITE": 5, "host.write": 6, "host.truncate": 6,
                           "LINK": 1, "MKNOD": 1, "SETXATTR": 1, "GETXATTR": 1,
                           "LISTXATTR": 1, "REMOVEXATTR": 1, "FALLOCATE": 2, "SYNCFS": 1}
"""How often a random walk picks each operation (others: 3): sessions rarely end, and
data and mapping paths, where most properties live, are exercised most; the requests of
the special concern, which few properties are about, seldom."""


def random_call(state: State, rand: random.Random,
                operation: Operation | None = None) -> tuple[str, tuple[object, ...]]:
    """A random call, with arguments from `candidates` (the guest's own ids if it has a
    guest parameter), picked from the edge cases about one time in seven."""
    if operation is None:
        ops = list(REGISTRY.values())
        operation = rand.choices(ops, [WEIGHTS.get(op.name, 3) for op in ops])[0]
    args: list[object] = []
    guest = None
    for param in operation.params:
        good, edge = _values(state, param, guest, operation.name)
        pool = edge if (rand.random() < 0.15 or not good) and edge else good
        pool = (None, *pool) if param.optional else pool
        value = rand.choice(pool)
        if param.kind == "GuestId" and isinstance(value, int):
            guest = value
        args.append(value)
    return operation.name, tuple(args)


@dataclass(frozen=True)
class Finding:
    """A property that failed, with the call sequence that led there."""

    properties: tuple[str, ...]
    trace: tuple[tuple[str, tuple[object, ...]], ...]


def check_step(state: State, name: str, args: tuple[object, ...],
               outcomes: tuple[Outcome, ...]) -> tuple[str, ...]:
    """The properties any outcome of this step breaks (step and invariant forms)."""
    broken: list[str] = []
    for outcome in outcomes:
        broken += step_violations(Step(state, name, args, outcome))
        broken += violations(outcome.state)
    return tuple(dict.fromkeys(broken))


def walk(config: Config = SMALL, *, walks: int, steps: int, seed: int = 0,
         operations: Mapping[str, Callable[..., tuple[Outcome, ...]]] = REGISTRY,
         ) -> Iterator[tuple[State, str, tuple[object, ...], tuple[Outcome, ...], Finding | None]]:
    """Seeded random walks from the initial state; yields every step with a Finding when
    a property broke. Each walk starts with a small tree (a 20-byte file `a` and a
    directory `d`, both looked up by every guest) so that calls find something.
    `operations` replaces the spec's own (the self-checks pass deliberately broken ones,
    to see the properties catch them)."""
    rand = random.Random(seed)
    for _ in range(walks):
        state = initial_state(config)
        trace: list[tuple[str, tuple[object, ...]]] = []
        prelude: tuple[tuple[str, tuple[object, ...]], ...] = (
            ("host.create", (b"a", 0o644)), ("host.write", (b"a", 0, bytes(range(20)))),
            ("host.mkdir", (b"d", 0o755)),
            *(("LOOKUP", (g, 1, name)) for g in range(config.guests) for name in (b"a", b"d")))
        for name, args in prelude:
            state = operations[name](state, *args)[0].state
            trace.append((name, args))
        for _ in range(steps):
            name, args = random_call(state, rand)
            outcomes = operations[name](state, *args)
            trace.append((name, args))
            broken = check_step(state, name, args, outcomes)
            yield state, name, args, outcomes, Finding(broken, tuple(trace)) if broken else None
            state = rand.choice(outcomes).state


def calls(state: State, operation: Operation, limit: int) -> Iterator[tuple[object, ...]]:
    """Every combination of candidate arguments for `operation` in `state` (each guest's
    own ids for its guest parameter), at most `limit` of them, in a fixed order."""

    def combos(index: int, guest: int | None) -> Iterator[tuple[object, ...]]:
        if index == len(operation.params):
            yield ()
            return
        param = operation.params[index]
        for value in candidates(state, param, guest, operation.name):
            chosen = value if param.kind == "GuestId" and isinstance(value, int) else guest
            for rest in combos(index + 1, chosen):
                yield (value, *rest)

    yield from itertools.islice(combos(0, None), limit)


Swept = tuple[State, str, tuple[object, ...], tuple[Outcome, ...], tuple[str, ...]]


def sweep(states: Iterable[State], limit: int) -> Iterator[Swept]:
    """From each state, every operation with every candidate argument combination (at most
    `limit` per operation): one step each, with the properties any outcome breaks."""
    for state in states:
        for operation in REGISTRY.values():
            for args in calls(state, operation, limit):
                outcomes = operation(state, *args)
                yield state, operation.name, args, outcomes, check_step(
                    state, operation.name, args, outcomes)
