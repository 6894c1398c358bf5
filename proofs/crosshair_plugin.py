"""CrossHair plugin: how to make pagefs spec values for contract checking.

`crosshair check --extra_plugin proofs/crosshair_plugin.py` runs this file. A `State`
is a member of `pagefs.proofs.crosshair_spec.state_family()` (reachable states, edge
cases included), chosen by comparing a symbolic index with each position, so CrossHair
branches over the members as over any other choice. (Building states by running
operations on symbolic contents inside a creator left later arguments' preconditions
unsatisfiable, and realizing the index always picked the first member.) CrossHair runs
a plugin as a script and then clears its globals, so the creators import what they use
when called.
"""

from __future__ import annotations

from typing import Any

from crosshair import SymbolicFactory, register_type

from pagefs.spec.datatypes import FrozenMap, State


def _frozen_map(factory: SymbolicFactory, key: type = object, value: type = object
                ) -> FrozenMap[Any, Any]:
    from types import GenericAlias

    from pagefs.spec.datatypes import FrozenMap

    return FrozenMap(factory(GenericAlias(dict, (key, value))))  # dict[key, value]


def _state(factory: SymbolicFactory) -> State:
    from crosshair.tracers import ResumedTracing

    from pagefs.proofs.crosshair_spec import state_family

    family = state_family()  # built concretely, before any symbol is touched
    with ResumedTracing():
        which = factory(int, "which")
        for index, state in enumerate(family):
            if which == index:
                return state
    return family[0]


register_type(FrozenMap, _frozen_map)
register_type(State, _state)
