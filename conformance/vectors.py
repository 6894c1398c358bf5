"""Test vectors: spec-generated traces as versioned, language-neutral JSON, and their replay.

`generate` walks the spec alone with the same state machines the suite runs against
targets (the spec is its own target: every step takes the spec's first outcome) and
writes one case per file:

    <out>/v1/<family>/<case>.json
    {"format": "pagefs-conformance-vector", "version": 1, "family": ..., "properties": [...],
     "requires": ["mappings", ...], "config": {"type": "Config", ...},
     "steps": [{"op": "LOOKUP", "args": {"guest": 0, "parent": 1, "name": {"hex": "61"}},
                "allowed": [{"type": "Ok", "value": {...}}, ...], "freed": [3]}, ...]}

A config with `callers` says who each guest's requests act as (uid, gid, umask: the
ownership family's user): a runner sends them in every request (capability
`credentials`) and compares owners (an `Attr`'s `uid` and `gid`) only in such cases.

A step passes when the target's answer is one of `allowed`. Identifiers in the vectors
are the spec's (nodeids from 2 and handles from 1 per guest, inodes from 2, root 1): a
runner keeps a bijection from its own, binds a new pair at the first answer naming it,
forgets a guest's nodeids and handles after its DESTROY, and forgets an inode's number
after a step lists it in `freed` (a target may then reuse it). Every case follows one
path: generation stops a case at a step whose allowed outcomes lead to different states.

`replay` runs every file under a directory against a target and accounts for each one:
passed, failed (with the trace), or skipped with its reason (a capability the target
lacks, or a file that is not a vector of this version).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import NoReturn

from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as seed_run
from hypothesis.stateful import get_state_machine_test

from pagefs.conformance.families import FAMILIES, Family
from pagefs.conformance.machines import RANGES_USED, machine_for
from pagefs.conformance.operations import BY_NAME
from pagefs.conformance.runner import seeded_run
from pagefs.conformance.session import Check, Observed, Session, initial_bindings, match
from pagefs.conformance.target import (
    ALL_CAPABILITIES,
    CONFINED,
    CREDENTIALS,
    MAPPINGS,
    PEERS,
    RACES,
    RAW_NAMES,
    READ_ONLY,
    RESET,
    TargetFactory,
)
from pagefs.spec import REGISTRY, Config, Err, Ok, State, initial_state
from pagefs.spec.codec import call_from_json, call_to_json, from_json, result_to_json, to_json

FORMAT, VERSION = "pagefs-conformance-vector", 1
_MEMORY = {"LOAD", "STORE", "SETUPMAPPING", "REMOVEMAPPING"}


class SpecOnlySession:
    """The spec as its own target: a step's answer is the spec's first allowed outcome."""

    def __init__(self, factory: object, config: Config, *, read_only: bool, guests: int,
                 loose: frozenset[str] = frozenset()) -> None:
        self.config = replace(config, read_only=read_only, guests=guests)
        self.guests = [None] * guests
        self.branches = [(initial_state(self.config), initial_bindings(guests))]
        self.steps: list[dict] = []
        self.finished = False

    @property
    def state(self) -> State:
        return self.branches[0][0]

    def step(self, op: str, args: tuple) -> Check:
        state, bindings = self.branches[0]
        outcomes = REGISTRY[op](state, *args)
        chosen = outcomes[0]
        record = {**call_to_json(op, args),
                  "allowed": [result_to_json(r) for r in dict.fromkeys(o.result
                                                                       for o in outcomes)]}
        freed = sorted(set(state.inodes) - set(chosen.state.inodes))
        if freed:
            record["freed"] = freed
        self.steps.append(record)
        self.finished = len({o.state for o in outcomes}) > 1
        self.branches = [(chosen.state, bindings)]
        result = chosen.result
        observed = (Observed("ok", result.value) if isinstance(result, Ok) else
                    Observed("err", int(result.errno)) if isinstance(result, Err) else
                    Observed("fault"))
        return Check(op, args, observed, (result,), True)

    def close(self) -> None:
        return None  # nothing runs


class _SpecFactory(TargetFactory):
    name = "spec"
    # A vector is a sequence of single calls; a read across a truncate is two at once.
    capabilities = ALL_CAPABILITIES - {RACES}

    def start(self, *, read_only: bool = False) -> NoReturn:  # never called
        raise NotImplementedError("the spec-only session starts no target")


def requirements(family: Family, config: Config, steps: list[dict]) -> list[str]:
    """The capabilities a target needs to run this case."""
    needs = set()
    if any(s["op"] in _MEMORY for s in steps):
        needs.add(MAPPINGS)
    if any(s["args"].get("guest", 0) for s in steps):
        needs.add(PEERS)
    if config.read_only:
        needs.add(READ_ONLY)
    if config.callers:
        needs.add(CREDENTIALS)
    for step in steps:
        capability = BY_NAME[step["op"]].capability if step["op"] in BY_NAME else None
        if capability is not None:
            needs.add(capability)
    connected = [True] * (1 + max((s["args"].get("guest", 0) for s in steps), default=0))
    for step in steps:
        guest = step["args"].get("guest", 0)
        if step["op"] == "INIT" and connected[guest]:
            needs.add(RESET)  # INIT on a live session: a guest reset without unmount
        if step["op"] in ("INIT", "DESTROY"):
            connected[guest] = step["op"] == "INIT"
    names = [from_json(v) for s in steps for k, v in s["args"].items()
             if k in ("name", "newname")]
    if any(b"/" in n for n in names):
        needs.add(RAW_NAMES)
    if family.name == "confinement":
        needs.add(CONFINED)
    return sorted(needs)


class _Recording:
    """Mixed into a family's machine: keeps each case's steps when it ends."""

    sink: list

    def teardown(self) -> None:
        if len(self.session.steps) >= 2:  # type: ignore[attr-defined]
            self.sink.append((self.session.config, self.session.steps))  # type: ignore[attr-defined]


def _slug(text: str) -> str:
    return text.replace(" ", "-")


CASES, SEED, STEPS = 8, 0, 12  # what the committed vectors/ are generated with


def _remove_stale(folder: str, fresh: set[str]) -> None:
    """Drop vectors of an earlier generation from `folder` (only files that are vectors)."""
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name not in fresh and name.endswith(".json") and isinstance(_load(path), dict):
            os.unlink(path)


def generate(out: str, *, cases: int = CASES, seed: int = SEED, steps: int = STEPS) -> int:
    """Write up to `cases` vectors per family under out/v1, replacing those an earlier
    generation left there; returns how many files are new."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("# pagefs conformance vectors\n\nGenerated by `pagefs-conformance vectors`; "
                "run them with `pagefs-conformance replay DIR --target T`.\n\n```\n"
                + (__doc__ or "").strip() + "\n```\n")
    written = 0
    factory = _SpecFactory()
    for family in FAMILIES:
        collected: list[tuple[Config, list[dict]]] = []

        recorder = type("Recorder", (_Recording, machine_for(factory, family,
                                                              family.properties[0])),
                        {"session_class": SpecOnlySession, "sink": collected})

        test = get_state_machine_test(recorder, settings=settings(
            max_examples=cases, stateful_step_count=steps, database=None, deadline=None,
            phases=(Phase.generate,), suppress_health_check=list(HealthCheck)))
        test = seed_run(seed)(test)
        with seeded_run():
            test()
        folder = os.path.join(out, f"v{VERSION}", _slug(family.name))
        os.makedirs(folder, exist_ok=True)
        fresh: set[str] = set()
        for config, case_steps in collected:
            case = {"format": FORMAT, "version": VERSION, "family": family.name,
                    "properties": list(family.properties),
                    "requires": requirements(family, config, case_steps),
                    "config": to_json(config), "steps": case_steps}
            text = json.dumps(case, indent=1, sort_keys=True)
            name = hashlib.sha256(text.encode()).hexdigest()[:16] + ".json"
            path = os.path.join(folder, name)
            fresh.add(name)
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write(text + "\n")
                written += 1
        _remove_stale(folder, fresh)
    return written


@dataclass
class VectorResult:
    path: str
    status: str  # "pass", "fail", "skipped"
    detail: str = ""
    trace: list[str] = field(default_factory=list)


@dataclass
class ReplayResult:
    target: str
    results: list[VectorResult]

    @property
    def ok(self) -> bool:
        return all(r.status != "fail" for r in self.results)

    def summary(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail",
                                                                        "skipped")}
        lines = [f"{self.target}: {len(self.results)} files: {counts['pass']} passed, "
                 f"{counts['fail']} failed, {counts['skipped']} skipped"]
        for r in self.results:
            if r.status != "pass":
                lines.append(f"  {r.status}: {r.path}: {r.detail}")
        for r in self.results:
            if r.trace:
                lines += [f"\n{r.path}:", *r.trace]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _replay_case(path: str, case: dict, factory: TargetFactory) -> VectorResult:
    config = from_json(case["config"])
    missing = sorted(set(case.get("requires", ())) - factory.capabilities)
    if missing:
        return VectorResult(path, "skipped", "; ".join(factory.why_not(c) for c in missing))
    session = Session(factory, config, read_only=config.read_only, guests=config.guests)
    if session.config.window_ranges < RANGES_USED and MAPPINGS in case.get("requires", ()):
        session.close()
        return VectorResult(path, "skipped", "the target's window is smaller than the case's")
    bindings = initial_bindings(config.guests)
    trace: list[str] = []
    try:
        for number, step in enumerate(case["steps"], 1):
            op, args = call_from_json(step)
            allowed = tuple(from_json(r) for r in step["allowed"])
            observed = session.execute(op, args, bindings)
            guest = args[0] if REGISTRY[op].params[0].kind == "GuestId" else None
            assert guest is None or isinstance(guest, int)
            bound = next((b for b in (match(bindings, op, guest, r, observed)
                                      for r in allowed) if b is not None), None)
            check = Check(op, args, observed, allowed, bound is not None)
            trace.append(f"{number:3}. {check.line()}")
            if bound is None:
                return VectorResult(path, "fail", trace[-1].strip(), trace)
            if op == "DESTROY":
                bound = bound.without_guest(guest)
            freed = set(step.get("freed", ()))
            if freed:
                bound = bound.forget_inodes(_Live(freed))
            bindings = bound
    finally:
        session.close()
    return VectorResult(path, "pass")


class _Live:
    """`in` for forget_inodes: every inode but the freed ones is live."""

    def __init__(self, freed: set[int]) -> None:
        self.freed = freed

    def __contains__(self, ino: object) -> bool:
        return ino not in self.freed


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link, not followed",
          stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def _files(directory: str) -> Iterator[tuple[str, str | None]]:
    """Every entry under `directory` that is not a directory walked into: (path, None),
    or (path, why it is skipped) for what cannot be listed or is a link to a directory."""
    failures: list[OSError] = []
    for root, dirs, files in os.walk(directory, onerror=failures.append):
        dirs.sort()
        for name in sorted(files):
            yield os.path.join(root, name), None
        for name in dirs:
            path = os.path.join(root, name)
            if os.path.islink(path):
                yield path, _KINDS[stat.S_IFLNK]
        while failures:
            exc = failures.pop()
            yield str(exc.filename), f"cannot list: {exc.strerror}"


def _load(path: str) -> dict | str:
    """The vector in `path`, or why the file is skipped. Only a regular file is opened
    (a FIFO would block the replay forever, a device may act on being opened)."""
    try:
        kind = stat.S_IFMT(os.lstat(path).st_mode)
        if kind != stat.S_IFREG:
            return f"not a regular file: {_KINDS.get(kind, oct(kind))}"
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(fd, closefd=True) as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the lstat
                return "not a regular file"
            case = json.load(f)
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not a JSON vector file"
    if not isinstance(case, dict) or case.get("format") != FORMAT:
        return "not a pagefs conformance vector"
    return case


def replay(directory: str, factory: TargetFactory, *, target_name: str | None = None
           ) -> ReplayResult:
    """Run every vector under `directory`; every file is accounted for. ValueError (one
    line) if `directory` is not a directory or holds no vector file at all."""
    if not os.path.isdir(directory):
        raise ValueError(f"{directory}: not a directory")
    loaded = [(os.path.relpath(path, directory), why or _load(path))
              for path, why in _files(directory)]
    if not any(isinstance(case, dict) for _, case in loaded):
        raise ValueError(f"{directory}: no pagefs conformance vectors in it (write them with "
                         "`pagefs-conformance vectors --out DIR`)")
    results = []
    for rel, case in loaded:
        if isinstance(case, str):
            results.append(VectorResult(rel, "skipped", case))
        elif case.get("version") != VERSION:
            results.append(VectorResult(rel, "skipped",
                                        f"vector version {case.get('version')} "
                                        f"(this runner reads {VERSION})"))
        else:
            results.append(_replay_case(rel, case, factory))
    return ReplayResult(target_name or factory.name, results)


__all__ = ["generate", "replay", "ReplayResult", "VectorResult"]
