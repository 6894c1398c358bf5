"""`make verify` stage: the spec's own self-checks.

- every named property holds on every state and step of seeded random walks, and on
  every candidate call from each edge-case state of the CrossHair family;
- each property can fail: a seeded-bug variant of one operation must be caught by it;
- the registry covers every operation docs/DESIGN.md names, each with a docstring and the
  `lawful` contract; every property of docs/DESIGN.md is defined;
- results survive the JSON round trip; docs/SEMANTICS.md is what the spec generates.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pagefs.proofs.table import Row
from pagefs.spec import codec, document
from pagefs.spec.datatypes import (
    FAULT,
    Access,
    Caller,
    Err,
    Errno,
    FileKind,
    Handle,
    Mtime,
    Ok,
    Outcome,
    State,
)
from pagefs.spec.explore import SMALL, sweep, walk
from pagefs.spec.guests import open_handle, with_guest
from pagefs.spec.properties import PROPERTIES
from pagefs.spec.registry import REGISTRY

DESIGN = Path(__file__).resolve().parent.parent / "docs" / "DESIGN.md"


def _design_operations(text: str) -> tuple[str, ...]:
    """The operations docs/DESIGN.md names: its ```operations block."""
    block = re.search(r"```operations\n(.*?)```", text, re.S)
    return tuple(block.group(1).split()) if block else ()


def _design_properties(text: str) -> tuple[str, ...]:
    """The named properties of docs/DESIGN.md: its "Named properties" list, in order."""
    section = text.partition("## Named properties")[2].partition("\n## ")[0]
    return tuple(re.findall(r"^- \*\*([A-Z][A-Z-]+)\*\*:", section, re.M))


DESIGN_OPERATIONS = _design_operations(DESIGN.read_text())
"""The operations docs/DESIGN.md's model names."""

DESIGN_PROPERTIES = _design_properties(DESIGN.read_text())
"""The named properties of docs/DESIGN.md."""

SEMANTICS = Path(__file__).resolve().parent.parent / "docs" / "SEMANTICS.md"

Op = Callable[..., tuple[Outcome, ...]]


def _each(outcomes: tuple[Outcome, ...], change: Callable[[Outcome], Outcome]
          ) -> tuple[Outcome, ...]:
    return tuple(change(o) for o in outcomes)


def _ok(o: Outcome) -> bool:
    return isinstance(o.result, Ok)


def _value(o: Outcome) -> Any:
    """A successful outcome's value, of the shape its operation returns (each mutant
    knows the operation it breaks)."""
    assert isinstance(o.result, Ok)
    return o.result.value


def _guest(state: State, g: int, **changes: Any) -> State:
    return with_guest(state, g, replace(state.guests[g], **changes))


@dataclass(frozen=True)
class Mutant:
    """A deliberately broken operation that `property` must catch."""

    property: str
    description: str
    op: str
    broken: Callable[[Op], Op]  # given the real operation, the broken one
    read_only: bool = False
    callers: tuple[Caller, ...] = ()  # who the guests' requests act as (root by default)


def _flip_load(real: Op) -> Op:
    def load(state: State, *args: object) -> tuple[Outcome, ...]:
        return _each(real(state, *args), lambda o: replace(o, result=Ok(bytes(
            b ^ 1 for b in _value(o)))) if _ok(o) and _value(o) else o)
    return load


def _succeed_doing_nothing(real: Op) -> Op:
    """Where the operation succeeds, it says so but leaves the state as it was (a STORE
    that stores nothing, an FSYNC that returns before the data is stable)."""
    def nothing(state: State, *args: object) -> tuple[Outcome, ...]:
        return _each(real(state, *args), lambda o: Outcome(Ok(None), state) if _ok(o) else o)
    return nothing


def _stale_mtime(real: Op) -> Op:
    def getattr_(state: State, *args: object) -> tuple[Outcome, ...]:
        def stale(o: Outcome) -> Outcome:
            if not _ok(o) or _value(o).mtime.version == 0:
                return o
            attr = _value(o)
            return replace(o, result=Ok(replace(attr, mtime=Mtime(attr.mtime.version - 1))))
        return _each(real(state, *args), stale)
    return getattr_


def _zeros_beyond_eof(real: Op) -> Op:
    def load(state: State, guest: int, woffset: int, length: int) -> tuple[Outcome, ...]:
        return _each(real(state, guest, woffset, length), lambda o: Outcome(
            Ok(bytes(max(length, 0))), state) if o.result == FAULT else o)
    return load


def _as_writable_export(real: Op) -> Op:
    def setattr_(state: State, *args: object) -> tuple[Outcome, ...]:
        writable = replace(state, config=replace(state.config, read_only=False))
        return _each(real(writable, *args), lambda o: replace(
            o, state=replace(o.state, config=state.config)))
    return setattr_


def _any_access(real: Op) -> Op:
    def setupmapping(state: State, guest: int, fh: int, *rest: object) -> tuple[Outcome, ...]:
        handle = state.guests[guest].handles.get(fh)
        if handle is None:
            return real(state, guest, fh, *rest)
        upgraded = _guest(state, guest, handles=state.guests[guest].handles.set(
            fh, replace(handle, access=Access.READ_WRITE)))
        return _each(real(upgraded, guest, fh, *rest), lambda o: replace(o, state=_guest(
            o.state, guest, handles=o.state.guests[guest].handles.set(fh, handle))))
    return setupmapping


def _free_unlinked(real: Op) -> Op:
    def unlink(state: State, *args: object) -> tuple[Outcome, ...]:
        def free(o: Outcome) -> Outcome:
            dead = [ino for ino, inode in o.state.inodes.items() if inode.nlink <= 0]
            inodes = o.state.inodes
            for ino in dead:
                inodes = inodes.remove(ino)
            return replace(o, state=replace(o.state, inodes=inodes))
        return _each(real(state, *args), free)
    return unlink


def _reuse_fh(real: Op) -> Op:
    def open_(state: State, guest: int, *args: object) -> tuple[Outcome, ...]:
        return _each(real(state, guest, *args), lambda o: replace(o, state=_guest(
            o.state, guest, next_fh=_value(o))) if _ok(o) else o)
    return open_


def _release_unmaps(real: Op) -> Op:
    def release(state: State, guest: int, fh: int) -> tuple[Outcome, ...]:
        handle = state.guests[guest].handles.get(fh)
        def unmap(o: Outcome) -> Outcome:
            if not _ok(o) or handle is None:
                return o
            window = tuple(None if m is not None and m.ino == handle.ino else m
                           for m in o.state.guests[guest].window)
            return replace(o, state=_guest(o.state, guest, window=window))
        return _each(real(state, guest, fh), unmap)
    return release


def _reuse_nodeid(real: Op) -> Op:
    def lookup(state: State, guest: int, *args: object) -> tuple[Outcome, ...]:
        return _each(real(state, guest, *args), lambda o: replace(o, state=_guest(
            o.state, guest, next_nodeid=_value(o).nodeid)) if _ok(o) else o)
    return lookup


def _unlink_missing(real: Op) -> Op:
    def unlink(state: State, *args: object) -> tuple[Outcome, ...]:
        return _each(real(state, *args), lambda o: Outcome(Ok(None), state) if isinstance(
            o.result, Err) and o.result.errno is Errno.ENOENT else o)
    return unlink


def _follow_symlink(real: Op) -> Op:
    def open_(state: State, guest: int, nodeid: int, flags: int) -> tuple[Outcome, ...]:
        node = state.guests[guest].nodes.get(nodeid)
        if node is not None and state.inodes[node.ino].kind is FileKind.LNK:
            after, fh = open_handle(state, guest, Handle(node.ino, Access.READ))
            return (Outcome(Ok(fh), after),)
        return real(state, guest, nodeid, flags)
    return open_


def _map_anything(real: Op) -> Op:
    def setupmapping(state: State, guest: int, fh: int, *rest: object) -> tuple[Outcome, ...]:
        handle = state.guests[guest].handles.get(fh)
        if handle is None or state.inodes[handle.ino].kind is FileKind.REG:
            return real(state, guest, fh, *rest)
        inode = state.inodes[handle.ino]
        as_file = replace(state, inodes=state.inodes.set(handle.ino, replace(
            inode, kind=FileKind.REG)))
        return _each(real(as_file, guest, fh, *rest), lambda o: replace(o, state=replace(
            o.state, inodes=o.state.inodes.set(handle.ino, inode))))
    return setupmapping


def _destroy_keeps(real: Op) -> Op:
    def destroy(state: State, guest: int) -> tuple[Outcome, ...]:
        return (Outcome(Ok(None), _guest(state, guest, connected=False)),)
    return destroy


def _no_umask(real: Op) -> Op:
    def create(state: State, guest: int, *args: object) -> tuple[Outcome, ...]:
        callers = tuple(replace(c, umask=0) for c in (state.config.caller(g) for g in range(
            len(state.guests))))
        unmasked = replace(state, config=replace(state.config, callers=callers))
        return _each(real(unmasked, guest, *args), lambda o: replace(o, state=replace(
            o.state, config=state.config)))
    return create


MUTANTS: tuple[Mutant, ...] = (
    Mutant("COH-READ", "LOAD shows bytes other than the host's", "LOAD", _flip_load),
    Mutant("COH-WRITE", "STORE succeeds but stores nothing", "STORE", _succeed_doing_nothing),
    Mutant("COH-PEER", "STORE reaches no one", "STORE", _succeed_doing_nothing),
    Mutant("COH-META", "GETATTR reports the previous mtime", "GETATTR", _stale_mtime),
    Mutant("EOF-FAULT", "LOAD beyond end of file reads zeros", "LOAD", _zeros_beyond_eof),
    Mutant("RO-EXPORT", "SETATTR ignores a read-only export", "SETATTR",
           _as_writable_export, read_only=True),
    Mutant("ACCESS-MODE", "SETUPMAPPING ignores the handle's access", "SETUPMAPPING",
           _any_access),
    Mutant("OWNERSHIP", "CREATE ignores its caller's umask", "CREATE", _no_umask,
           callers=(Caller(umask=0o077),) * 2),
    Mutant("ISOLATION", "unlink frees a mapped file", "host.unlink", _free_unlinked),
    Mutant("HANDLE", "OPEN hands the same number out again", "OPEN", _reuse_fh),
    Mutant("LIFETIME", "RELEASE removes the handle's mappings", "RELEASE", _release_unmaps),
    Mutant("NODEID", "LOOKUP hands the same nodeid out again", "LOOKUP", _reuse_nodeid),
    Mutant("NAMESPACE", "UNLINK of a missing name succeeds", "UNLINK", _unlink_missing),
    Mutant("CONFINE", "OPEN follows a symlink", "OPEN", _follow_symlink),
    Mutant("SINGLE-COPY", "SETUPMAPPING maps a directory", "SETUPMAPPING", _map_anything),
    Mutant("RECLAIM", "DESTROY keeps the guest's handles", "DESTROY", _destroy_keeps),
    Mutant("DURABLE", "FSYNC returns before data is stable", "FSYNC", _succeed_doing_nothing),
)
"""One seeded bug per named property."""


def _caught(mutant: Mutant, walks: int, steps: int) -> int | None:
    """The step count at which the property caught the mutant, or None. A walk ends at
    its first finding: past a broken step the state is no longer one the spec reaches."""
    operations = {name: op.function for name, op in REGISTRY.items()}
    operations[mutant.op] = mutant.broken(operations[mutant.op])
    config = replace(SMALL, read_only=mutant.read_only, callers=mutant.callers)
    count = 0
    for seed in range(walks):
        for *_, finding in walk(config, walks=1, steps=steps, seed=seed, operations=operations):
            count += 1
            if finding is not None:
                if mutant.property in finding.properties:
                    return count
                break
    return None


def _property_rows(walks: int, steps: int, sweep_limit: int) -> Iterable[Row]:
    """Every property on seeded walks, and on one step of every candidate call from each
    edge-case state of the CrossHair family; results must survive JSON too."""
    from pagefs.proofs.crosshair_spec import state_family

    start = time.monotonic()
    broken: dict[str, str] = {}
    count = 0
    states: set[State] = set()

    def note(name: str, args: tuple[object, ...], outcomes: tuple[Outcome, ...],
             properties: Iterable[str]) -> None:
        for outcome in outcomes:
            if codec.from_json(codec.to_json(outcome.result)) != outcome.result:
                broken.setdefault("JSON", f"{name}{args}: {outcome.result}")
        for prop in properties:
            broken.setdefault(prop, f"{name}{args}")

    for state, name, args, outcomes, finding in walk(walks=walks, steps=steps, seed=11):
        count += 1
        states.add(state)
        note(name, args, outcomes, finding.properties if finding else ())
    family = state_family()
    for _state, name, args, outcomes, properties in sweep(family, sweep_limit):
        count += 1
        note(name, args, outcomes, properties)
    states |= set(family)
    seconds = time.monotonic() - start
    method = f"walks {walks}x{steps} + sweep of {len(family)} states"
    for prop in PROPERTIES:
        ok = prop.name not in broken
        yield Row(prop.name, "every operation", method, "holds" if ok else "FAIL", ok,
                  seconds / len(PROPERTIES),
                  broken.get(prop.name, f"{count} steps, {len(states)} distinct states"))
    ok = "JSON" not in broken
    yield Row("JSON round trip", "every result", method, "pass" if ok else "FAIL", ok, 0.0,
              broken.get("JSON", f"{count} steps"))


def _coverage_rows() -> Iterable[Row]:
    # A document that names nothing (a heading renamed) must fail, not pass vacuously.
    missing = [name for name in DESIGN_OPERATIONS if name not in REGISTRY] or \
        ([] if DESIGN_OPERATIONS else ["(docs/DESIGN.md names no operations)"])
    yield Row("registry", "docs/DESIGN.md operations", "coverage",
              "pass" if not missing else "FAIL", not missing, 0.0,
              f"missing: {missing}" if missing else
              f"{len(DESIGN_OPERATIONS)} named, {len(REGISTRY)} registered")
    undefined = [name for name in DESIGN_PROPERTIES
                 if name not in {p.name for p in PROPERTIES}] or \
        ([] if DESIGN_PROPERTIES else ["(docs/DESIGN.md names no properties)"])
    yield Row("properties", "docs/DESIGN.md properties", "coverage",
              "pass" if not undefined else "FAIL", not undefined, 0.0,
              f"undefined: {undefined}" if undefined else f"{len(PROPERTIES)} defined")
    uncontracted = [op.name for op in REGISTRY.values()
                    if f'post: lawful(state, "{op.name}",' not in op.doc]
    yield Row("contracts", "every operation", "docstring lawful contract",
              "pass" if not uncontracted else "FAIL", not uncontracted, 0.0,
              f"without: {uncontracted}" if uncontracted else f"{len(REGISTRY)} operations")


def _docs_row() -> Row:
    fresh = document.render()
    committed = SEMANTICS.read_text() if SEMANTICS.exists() else ""
    ok = fresh == committed
    return Row("SEMANTICS.md", "docs/SEMANTICS.md", "generated = committed",
               "fresh" if ok else "STALE", ok, 0.0,
               "" if ok else "run `make docs` and commit docs/SEMANTICS.md")


def rows(quick: bool = True) -> Iterable[Row]:
    """The spec's self-checks, as verify rows."""
    walks, steps, limit = (150, 40, 40) if quick else (1500, 60, 1000)
    yield from _coverage_rows()
    yield _docs_row()
    yield from _property_rows(walks, steps, limit)
    for mutant in MUTANTS:
        start = time.monotonic()
        caught = _caught(mutant, walks=walks * 2, steps=steps)
        ok = caught is not None
        yield Row(mutant.property, mutant.description, "seeded bug",
                  "caught" if ok else "MISSED", ok, time.monotonic() - start,
                  f"after {caught} steps" if ok else "the property never failed")
