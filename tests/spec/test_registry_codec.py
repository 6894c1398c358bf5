"""The operation registry and the JSON encoding of calls, results and states."""

import json

import pytest

from pagefs.spec import FAULT, REGISTRY, Err, Errno, Ok, initial_state, operations
from pagefs.spec.codec import (
    call_from_json,
    call_to_json,
    from_json,
    outcomes_to_json,
    result_from_json,
    result_to_json,
    to_json,
)
from pagefs.spec.datatypes import Attr, FileKind, Mtime
from pagefs.spec.explore import SMALL, walk


def test_registry_names_kinds_and_opcodes() -> None:
    assert {op.kind for op in operations()} == {"host", "request", "memory"}
    assert REGISTRY["SETUPMAPPING"].opcode == 48 and REGISTRY["REMOVEMAPPING"].opcode == 49
    assert REGISTRY["LOOKUP"].opcode == 1 and REGISTRY["LOAD"].opcode is None
    assert all(op.params[0].kind == "GuestId" for op in operations("request"))
    assert all(op.name.startswith("host.") for op in operations("host"))
    assert [p.name for p in REGISTRY["SETUPMAPPING"].params] == [
        "guest", "fh", "foffset", "length", "writable", "moffset"]
    assert [p.optional for p in REGISTRY["SETATTR"].params] == [False, False, True, True, True]
    assert all(op.doc for op in operations())


def test_every_operation_returns_outcomes_from_the_initial_state() -> None:
    from pagefs.spec.explore import candidates

    state = initial_state(SMALL)
    for op in operations():
        args = tuple(candidates(state, p, op=op.name)[0] for p in op.params)
        outcomes = op(state, *args)
        assert outcomes and all(o.state.config == state.config for o in outcomes), op.name


def test_calls_round_trip_through_json() -> None:
    call = call_to_json("SETATTR", (0, 2, None, 0o600, None))
    assert call == {"op": "SETATTR", "args": {"guest": 0, "nodeid": 2, "size": None,
                                              "mode": 0o600, "mtime_ns": None}}
    wire = json.loads(json.dumps(call_to_json("WRITE", (1, 3, 0, b"\x00\xff"))))
    assert wire["args"]["data"] == {"hex": "00ff"}
    assert call_from_json(wire) == ("WRITE", (1, 3, 0, b"\x00\xff"))
    with pytest.raises(ValueError):
        call_to_json("READ", (0,))


def test_results_encode_errnos_by_name_and_bytes_as_hex() -> None:
    assert result_to_json(Err(Errno.ENOENT)) == {"type": "Err", "errno": "ENOENT"}
    assert result_to_json(FAULT) == {"type": "Fault"}
    assert result_to_json(Ok(b"hi")) == {"type": "Ok", "value": {"hex": "6869"}}
    attr = Attr(2, FileKind.REG, 0o644, 1, 5, Mtime(3, None))
    encoded = result_to_json(Ok(attr))
    assert encoded["value"]["kind"] == "REG"
    assert result_from_json(json.loads(json.dumps(encoded))) == Ok(attr)


def test_every_result_and_state_of_a_walk_round_trips() -> None:
    for state, _name, _args, outcomes, _ in walk(walks=5, steps=30, seed=5):
        assert from_json(json.loads(json.dumps(to_json(state)))) == state
        for outcome in outcomes:
            encoded = json.loads(json.dumps(to_json(outcome.result)))
            assert from_json(encoded) == outcome.result
        assert len(outcomes_to_json(outcomes + outcomes)) == len(
            {to_json(o.result).__repr__() for o in outcomes})
