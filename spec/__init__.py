"""pagefs.spec: the executable specification of pagefs.

A state machine over plain values. `initial_state(config)` gives a start state; every
operation, looked up by name in `REGISTRY`, maps a state and arguments to the tuple of
allowed outcomes (`Outcome(result, state)`, result `Ok(value)`, `Err(errno)` or `FAULT`).
The named properties live in `pagefs.spec.properties`; `python -m pagefs.spec.document`
prints the semantics document generated from these modules.
"""

from pagefs.spec.datatypes import (
    FAULT,
    ROOT_INO,
    ROOT_NODEID,
    Config,
    Err,
    Errno,
    Fault,
    Ok,
    Outcome,
    State,
    initial_state,
)
from pagefs.spec.registry import REGISTRY, Operation, Param, apply, operations

__all__ = [
    "FAULT", "REGISTRY", "ROOT_INO", "ROOT_NODEID", "Config", "Err", "Errno", "Fault", "Ok",
    "Operation", "Outcome", "Param", "State", "apply", "initial_state", "operations",
]
