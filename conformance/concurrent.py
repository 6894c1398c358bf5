"""Concurrent conformance: host and guest operations truly at once, checked for
linearizability against the spec.

Each round starts a fresh target case beside the spec (a `Session`): the host creates
a file with data, every guest looks it up, opens it read-write and (with MAPPINGS) maps
it writable. Then, at once, a host *process* (`python -m pagefs.conformance.concurrent
host ROOT`, writing, truncating and reading the file through `HostDir`) and one *thread*
per guest run short random programs, each operation recorded with its invocation and
response times (CLOCK_MONOTONIC, shared by the processes). The history is then checked
Wing–Gong style: is there an order of the operations that respects real time (an
operation that answered before another was invoked comes first) in which every answer
is one the spec allows from the state the previous ones reached? The search over the
spec's allowed-outcome sets is bounded (NODE_BUDGET states); running out of budget is
inconclusive, never a pass. Operations are linearized whole (the spec states no finer
memory model for a load racing a store).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from pagefs.conformance.session import Bindings, Observed, Session, match
from pagefs.conformance.target import MAPPINGS, PEERS, Guest, Target, TargetFactory
from pagefs.conformance.targets.hostdir import HostDir
from pagefs.spec import REGISTRY, Config, State
from pagefs.spec.datatypes import O_RDWR

PAGE = 4096
DATA = bytes(range(1, 251)) * 40  # 10000 bytes, none zero
OFFSETS = (0, 1, 100, PAGE - 4, PAGE, PAGE + 7, 2 * PAGE - 2, 9990)
SIZES = (0, 100, PAGE, PAGE + 5, 2 * PAGE, 10000)
NODE_BUDGET = 200_000
PAUSES = (0.0, 0.001, 0.0003, 0.002, 0.0)  # seconds before each operation, in turn
Branches = frozenset[tuple[State, Bindings]]


@dataclass(frozen=True)
class Event:
    """One operation of the history: spec arguments, what the target answered, when."""

    worker: str
    op: str
    args: tuple
    observed: Observed
    invoked: int
    answered: int


@dataclass
class RoundResult:
    events: list[Event]
    linearizable: bool | None  # None: the search ran out of budget
    nodes: int


@dataclass
class Result:
    target: str
    rounds: list[RoundResult] = field(default_factory=list)

    @property
    def violations(self) -> list[RoundResult]:
        return [r for r in self.rounds if r.linearizable is False]

    @property
    def inconclusive(self) -> list[RoundResult]:
        return [r for r in self.rounds if r.linearizable is None]


def _host_program(rng: random.Random, n: int) -> list[tuple]:
    ops: list[tuple] = []
    for _ in range(n):
        kind = rng.choice(("write", "truncate", "read", "read"))
        if kind == "write":
            ops.append(("host.write", b"a", rng.choice(OFFSETS),
                        bytes(rng.randrange(1, 256) for _ in range(rng.randint(1, 8)))))
        elif kind == "truncate":
            ops.append(("host.truncate", b"a", rng.choice(SIZES)))
        else:
            ops.append(("host.read", b"a", rng.choice(OFFSETS), rng.randint(1, 8)))
    return ops


def _guest_program(rng: random.Random, g: int, fh: int, mapped: bool, n: int) -> list[tuple]:
    ops: list[tuple] = []
    kinds = ("READ", "WRITE", "LOAD", "STORE") if mapped else ("READ", "WRITE")
    for _ in range(n):
        kind = rng.choice(kinds)
        offset, size = rng.choice(OFFSETS), rng.randint(1, 8)
        data = bytes(rng.randrange(1, 256) for _ in range(size))
        ops.append({"READ": ("READ", g, fh, offset, size), "WRITE": ("WRITE", g, fh, offset, data),
                    "LOAD": ("LOAD", g, offset, size), "STORE": ("STORE", g, offset, data)}[kind])
    return ops


def _encode(value: object) -> object:
    return {"hex": value.hex()} if isinstance(value, bytes) else value


def _decode(value: object) -> object:
    return bytes.fromhex(value["hex"]) if isinstance(value, dict) else value


def host_worker(root: str) -> None:
    """The host process: a JSON list of operations on stdin; after "go", run them and
    print each one's answer and times."""
    ops = [tuple(_decode(a) for a in op) for op in json.loads(sys.stdin.readline())]
    host = HostDir(root)
    print("ready", flush=True)
    sys.stdin.readline()
    out = []
    for i, op in enumerate(ops):
        time.sleep(PAUSES[i % len(PAUSES)])  # spread out, so operations overlap
        verb = str(op[0]).removeprefix("host.")
        invoked = time.monotonic_ns()
        try:
            value = getattr(host, verb)(*op[1:])
            answer = ["ok", _encode(value)]
        except OSError as exc:
            answer = ["err", exc.errno]
        out.append([answer, invoked, time.monotonic_ns()])
    print(json.dumps(out), flush=True)


def _setup(session: Session) -> tuple[int, bool]:
    """The scene: a file with data, opened read-write (and mapped) by every guest."""
    mapped = MAPPINGS in session.target.capabilities
    steps = [("host.create", (b"a", 0o644)), ("host.write", (b"a", 0, DATA[:2 * PAGE + 100]))]
    for g in range(len(session.guests)):
        steps += [("LOOKUP", (g, 1, b"a")), ("OPEN", (g, 2, O_RDWR))]
        if mapped:
            steps.append(("SETUPMAPPING", (g, 1, 0, session.config.range_size, True, 0)))
    for op, args in steps:
        check = session.step(op, args)
        if not check.ok:
            raise RuntimeError(f"the scene departs sequentially: {check.line()}")
    return 1, mapped


def _run_guest(session: Session, worker: str, ops: list[tuple], out: list[Event],
               start: threading.Event) -> None:
    bindings = session.branches[0][1]
    start.wait()
    for i, op in enumerate(ops):
        time.sleep(PAUSES[(i + len(worker)) % len(PAUSES)])
        invoked = time.monotonic_ns()
        observed = session.execute(op[0], op[1:], bindings)
        out.append(Event(worker, op[0], op[1:], observed, invoked, time.monotonic_ns()))


def run_round(session: Session, rng: random.Random, ops_per_worker: int,
              threads_per_guest: int = 1) -> list[Event]:
    fh, mapped = _setup(session)
    root = os.fsdecode(session.target.host.root)  # type: ignore[attr-defined]
    host_ops = _host_program(rng, ops_per_worker)
    worker = subprocess.Popen([sys.executable, "-m", "pagefs.conformance.concurrent", "host",
                               root], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert worker.stdin and worker.stdout
    worker.stdin.write(json.dumps([[_encode(a) for a in op] for op in host_ops]) + "\n")
    worker.stdin.flush()
    if worker.stdout.readline().strip() != "ready":
        raise RuntimeError("the host worker did not start")
    start = threading.Event()
    results: list[list[Event]] = []
    threads = []
    for g in range(len(session.guests)):
        for t in range(threads_per_guest):
            ops = _guest_program(rng, g, fh, mapped, ops_per_worker)
            results.append([])
            threads.append(threading.Thread(target=_run_guest, args=(
                session, f"guest{g}.{t}", ops, results[-1], start)))
    for thread in threads:
        thread.start()
    worker.stdin.write("go\n")
    worker.stdin.flush()
    start.set()
    for thread in threads:
        thread.join()
    answers = json.loads(worker.stdout.readline())
    worker.wait(30)
    events = [e for r in results for e in r]
    for op, (answer, invoked, answered) in zip(host_ops, answers, strict=True):
        observed = Observed("ok", _decode(answer[1])) if answer[0] == "ok" else \
            Observed("err", answer[1])
        events.append(Event("host", op[0], op[1:], observed, invoked, answered))
    return sorted(events, key=lambda e: e.invoked)


def _advance(branches: Branches, event: Event) -> Branches:
    """The spec states (with bindings) that explain `event` after any of `branches`."""
    params = REGISTRY[event.op].params
    guest = event.args[0] if params and params[0].kind == "GuestId" else None
    out = set()
    for state, b in branches:
        for outcome in REGISTRY[event.op](state, *event.args):
            bound = match(b, event.op, guest, outcome.result, event.observed)
            if bound is not None:
                out.add((outcome.state, bound.forget_inodes(outcome.state.inodes)))
    return frozenset(out)


def linearizable(events: list[Event], start: Branches,
                 budget: int = NODE_BUDGET) -> tuple[bool | None, int]:
    """Wing–Gong search with memoisation: (True/False, or None when the budget ran out;
    the states visited)."""
    seen: set[tuple[frozenset[int], Branches]] = set()
    nodes = 0
    stack: list[tuple[frozenset[int], Branches]] = [(frozenset(), start)]
    everything = frozenset(range(len(events)))
    while stack:
        done, branches = stack.pop()
        if done == everything:
            return True, nodes
        if (done, branches) in seen:
            continue
        seen.add((done, branches))
        nodes += 1
        if nodes > budget:
            return None, nodes
        pending = everything - done
        first_answer = min(events[i].answered for i in pending)
        for i in sorted(pending, key=lambda i: -events[i].invoked):
            if events[i].invoked > first_answer:
                continue  # something still pending answered before this was invoked
            after = _advance(branches, events[i])
            if after:
                stack.append((done | {i}, after))
    return False, nodes


def check(factory: TargetFactory, *, rounds: int = 20, ops_per_worker: int = 6,
          seed: int = 0, threads_per_guest: int = 1) -> Result:
    """`rounds` concurrent rounds on fresh cases of the target, each history checked."""
    rng = random.Random(seed)
    result = Result(factory.name)
    guests = 2 if PEERS in factory.capabilities else 1
    for _ in range(rounds):
        session = Session(factory, Config(), guests=guests)
        try:
            events = run_round(session, rng, ops_per_worker, threads_per_guest)
            start = frozenset(session.branches)
        finally:
            session.close()
        verdict, nodes = linearizable(events, start)
        result.rounds.append(RoundResult(events, verdict, nodes))
    return result


class _TornWrites(TargetFactory):
    """A deliberately non-linearizable target: a guest WRITE of several bytes is sent as
    two halves with a pause between, so a host read in the pause sees half of it. Each
    step alone is still what the spec allows, so sequential runs cannot tell."""

    def __init__(self, inner: TargetFactory) -> None:
        self.inner, self.name = inner, f"{inner.name}+torn-writes"
        self.capabilities = inner.capabilities

    def start(self, *, read_only: bool = False) -> Target:
        target = self.inner.start(read_only=read_only)
        connect = target.connect

        def torn() -> Guest:
            guest = connect()
            whole = guest.write

            def write(fh: int, offset: int, data: bytes) -> int:
                half = len(data) // 2
                if not half:
                    return whole(fh, offset, data)
                done = whole(fh, offset, data[:half])
                time.sleep(0.003)
                return done + whole(fh, offset + half, data[half:])
            guest.write = write  # type: ignore[method-assign]
            return guest
        target.connect = torn  # type: ignore[method-assign]
        return target

    def close(self) -> None:
        self.inner.close()


def torn_writes(factory: TargetFactory) -> TargetFactory:
    return _TornWrites(factory)


def _show(e: Event, t0: int) -> str:
    args = ", ".join(repr(a) if not isinstance(a, bytes) or len(a) < 20 else f"<{len(a)} bytes>"
                     for a in e.args)
    return (f"    {e.worker:9} [{(e.invoked - t0) / 1000:9.1f} µs .. "
            f"{(e.answered - t0) / 1000:9.1f} µs] {e.op}({args}) -> {e.observed}")


def to_markdown(results: list[Result], *, seed: int, ops_per_worker: int) -> str:
    out = ["# Concurrent conformance", "",
           "`pagefs-conformance concurrent` (conformance/concurrent.py): per round, a fresh "
           "case; the host (a separate process) writes, truncates and reads a file while "
           "each guest (a thread) reads, writes, loads and stores it through its mapping; "
           "the recorded history (invocation and response times) is checked for "
           "linearizability against the spec, operations whole, by a bounded Wing–Gong "
           f"search (up to {NODE_BUDGET} states). Seed {seed}, {ops_per_worker} operations "
           "per worker.", "",
           "| target | rounds | operations | linearizable | not linearizable | "
           "inconclusive (budget) | most states searched |", "|---|---|---|---|---|---|---|"]
    for r in results:
        ok = len(r.rounds) - len(r.violations) - len(r.inconclusive)
        out.append(f"| `{r.target}` | {len(r.rounds)} | "
                   f"{sum(len(x.events) for x in r.rounds)} | {ok} | {len(r.violations)} | "
                   f"{len(r.inconclusive)} | {max((x.nodes for x in r.rounds), default=0)} |")
    for r in results:
        for bad in r.violations[:1]:
            t0 = min(e.invoked for e in bad.events)
            out += ["", f"## `{r.target}`: a history no order explains", "", "```",
                    *(_show(e, t0) for e in bad.events), "```"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "host":
        host_worker(sys.argv[2])
    else:
        sys.exit("usage: python -m pagefs.conformance.concurrent host ROOT")
