"""OWNERSHIP in the spec's operations: a guest whose requests act as a user (Config.callers)
is refused what its permission bits refuse, owns what it makes, and clears set-id bits
by writing; the property's predicate holds on those steps and catches a wrong owner."""

from __future__ import annotations

from dataclasses import replace

from pagefs.spec import REGISTRY, Config, Err, Errno, Ok, initial_state
from pagefs.spec.datatypes import Caller, Outcome
from pagefs.spec.properties import Step, ownership

USER = Caller(1000, 1000, 0o022)


def run(steps: list[tuple[str, tuple]]):  # noqa: ANN201
    state = initial_state(replace(Config(guests=1), callers=(USER,)))
    results = []
    for op, args in steps:
        outcomes = REGISTRY[op](state, *args)
        assert all(ownership(Step(state, op, args, o)) for o in outcomes)
        results.append(outcomes[0].result)
        state = outcomes[0].state
    return state, results


SCENE = [("host.mkdir", (b"d", 0o777)), ("host.chmod", (b"d", 0o2777)),
         ("host.create", (b"suid", 0o6777)), ("LOOKUP", (0, 1, b"d")),
         ("LOOKUP", (0, 1, b"suid"))]


def test_a_user_owns_what_it_makes_in_a_set_gid_directorys_group() -> None:
    state, results = run([*SCENE, ("CREATE", (0, 2, b"f", 0o100, 0o2755)),
                          ("MKDIR", (0, 2, b"sub", 0o777))])
    made = {name: state.inodes[ino] for name, ino in state.inodes[2].entries.items()}
    assert (made[b"f"].uid, made[b"f"].gid, made[b"f"].mode) == (1000, 0, 0o755)
    assert (made[b"sub"].uid, made[b"sub"].gid, made[b"sub"].mode) == (1000, 0, 0o2755)


def test_a_user_is_refused_by_permission_bits_and_clears_set_id_by_writing() -> None:
    state, results = run([*SCENE, ("CREATE", (0, 1, b"x", 0o100, 0o644)),
                          ("SETATTR", (0, 3, None, 0o4777, None)),
                          ("OPEN", (0, 3, 0o1)), ("WRITE", (0, 1, 0, b"w"))])
    assert results[-4:-1] == [Err(Errno.EACCES), Err(Errno.EPERM), Ok(1)]
    assert state.inodes[3].mode == 0o777


def test_the_property_catches_a_file_made_as_root() -> None:
    state, _ = run(SCENE)
    outcome = REGISTRY["CREATE"](state, 0, 2, b"f", 0o100, 0o644)[0]
    ino = outcome.result.value.entry.attr.ino
    wrong = replace(outcome.state, inodes=outcome.state.inodes.set(
        ino, replace(outcome.state.inodes[ino], uid=0)))
    assert not ownership(Step(state, "CREATE", (0, 2, b"f", 0o100, 0o644),
                              Outcome(outcome.result, wrong)))
