"""JSON for calls, results and states, for vectors and reports in any language.

The encoding is plain JSON: ints, booleans and null as themselves; bytes as
`{"hex": "<lowercase hex>"}`; enums by name (`"ENOENT"`, `"REG"`, `"READ_WRITE"`);
every spec dataclass as an object tagged with its class name, `{"type": "Attr", ...}`;
tuples as arrays; maps as arrays of `[key, value]` pairs. So a result is
`{"type": "Ok", "value": ...}`, `{"type": "Err", "errno": "ENOENT"}` or
`{"type": "Fault"}`, and a call is `{"op": "LOOKUP", "args": {"guest": 0, ...}}` with the
arguments named as in the registry.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from pagefs.spec import datatypes
from pagefs.spec.datatypes import Err, Fault, FrozenMap, Ok, Outcome, Result
from pagefs.spec.registry import REGISTRY

JSON = Any  # what json.loads returns

_CLASSES: dict[str, type] = {
    name: cls for name, cls in vars(datatypes).items()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls)
}


def to_json(value: object) -> JSON:
    """Encode any spec value (argument, result, attribute, state) as plain JSON."""
    if value is None or isinstance(value, bool | int | str) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        encoded: dict[str, JSON] = {"type": type(value).__name__}
        for f in dataclasses.fields(value):
            encoded[f.name] = to_json(getattr(value, f.name))
        return encoded
    if isinstance(value, FrozenMap):
        return [[to_json(k), to_json(v)] for k, v in value.items()]
    if isinstance(value, tuple | list):
        return [to_json(item) for item in value]
    raise TypeError(f"cannot encode {type(value).__name__} as spec JSON")


def from_json(data: JSON, hint: object = None) -> Any:
    """Decode what `to_json` made. Tagged objects and hex strings describe themselves;
    `hint` (a type) is needed only for enums and maps outside a dataclass field."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if data is None:
            return None
        for option in options:
            if _fits(data, option):
                return from_json(data, option)
        return from_json(data, None)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint[data]
    if isinstance(data, dict) and "hex" in data:
        return bytes.fromhex(data["hex"])
    if isinstance(data, dict) and "type" in data:
        cls = _CLASSES[data["type"]]
        hints = typing.get_type_hints(cls)
        return cls(**{f.name: from_json(data[f.name], hints[f.name])
                      for f in dataclasses.fields(cls) if f.name in data})
    if isinstance(data, list):
        if origin is FrozenMap:
            key_hint, value_hint = typing.get_args(hint)
            return FrozenMap({from_json(k, key_hint): from_json(v, value_hint) for k, v in data})
        args = typing.get_args(hint)
        item_hint = args[0] if args else None
        return tuple(from_json(item, item_hint) for item in data)
    return data


def _fits(data: JSON, option: object) -> bool:
    """Whether encoded `data` can be a value of type `option` (to pick a union member)."""
    cls = typing.get_origin(option) or option
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return isinstance(data, str) and data in cls.__members__
    if isinstance(data, dict):
        if "hex" in data:
            return cls is bytes
        return isinstance(cls, type) and cls.__name__ == data.get("type")
    if isinstance(data, list):
        return cls in (tuple, FrozenMap)
    if isinstance(data, bool):
        return cls is bool
    if isinstance(data, int):
        return cls is int
    return False


def call_to_json(name: str, args: tuple[object, ...]) -> JSON:
    """A call as `{"op": name, "args": {param: value}}`."""
    params = REGISTRY[name].params
    if len(args) != len(params):
        raise ValueError(f"{name} takes {len(params)} arguments, got {len(args)}")
    return {"op": name, "args": {p.name: to_json(a) for p, a in zip(params, args, strict=True)}}


def call_from_json(data: JSON) -> tuple[str, tuple[object, ...]]:
    """The operation name and argument tuple of an encoded call."""
    operation = REGISTRY[data["op"]]
    return operation.name, tuple(from_json(data["args"][p.name]) for p in operation.params)


def result_to_json(result: Result) -> JSON:
    return to_json(result)


def result_from_json(data: JSON) -> Result:
    result = from_json(data)
    if not isinstance(result, Ok | Err | Fault):
        raise ValueError(f"not a result: {data!r}")
    return result


def outcomes_to_json(outcomes: tuple[Outcome, ...]) -> JSON:
    """The allowed results of a step (without their states), without repeats."""
    seen: list[JSON] = []
    for outcome in outcomes:
        encoded = to_json(outcome.result)
        if encoded not in seen:
            seen.append(encoded)
    return seen
