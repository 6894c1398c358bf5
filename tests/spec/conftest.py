"""A small driver for the spec in tests: apply operations, insist on their outcomes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pagefs.spec import FAULT, Config, Err, Errno, Ok, Outcome, State, apply, initial_state
from pagefs.spec.explore import SMALL
from pagefs.spec.properties import Step, step_violations, violations


class Driver:
    """Applies operations to a spec state, checking every named property on each step.

    `ok` and `err` insist that exactly the expected kind of outcome is allowed and move
    to its next state; `outcomes` returns the whole allowed set without moving."""

    def __init__(self, config: Config = SMALL) -> None:
        self.state: State = initial_state(config)

    def outcomes(self, name: str, *args: object) -> tuple[Outcome, ...]:
        outcomes = apply(self.state, name, args)
        assert outcomes, f"{name}{args} allowed nothing"
        for outcome in outcomes:
            broken = step_violations(Step(self.state, name, args, outcome))
            broken += violations(outcome.state)
            assert not broken, f"{name}{args} broke {broken}"
        return outcomes

    def ok(self, name: str, *args: object) -> object:
        """The value of the one allowed outcome, which must be a success."""
        outcomes = self.outcomes(name, *args)
        assert len(outcomes) == 1 and isinstance(outcomes[0].result, Ok), \
            f"{name}{args} -> {[o.result for o in outcomes]}"
        self.state = outcomes[0].state
        return outcomes[0].result.value

    def err(self, name: str, *args: object) -> set[Errno]:
        """The errnos allowed; every outcome must be a refusal that changes nothing."""
        outcomes = self.outcomes(name, *args)
        assert all(isinstance(o.result, Err) for o in outcomes), \
            f"{name}{args} -> {[o.result for o in outcomes]}"
        assert all(o.state == self.state for o in outcomes)
        return {o.result.errno for o in outcomes}

    def fault(self, name: str, *args: object) -> None:
        outcomes = self.outcomes(name, *args)
        assert all(o.result == FAULT for o in outcomes), [o.result for o in outcomes]
        self.state = outcomes[0].state

    def results(self, name: str, *args: object) -> list[object]:
        return [o.result for o in self.outcomes(name, *args)]

    # --- common set-ups ---

    def file(self, path: bytes, data: bytes = b"") -> None:
        self.ok("host.create", path, 0o644)
        if data:
            self.ok("host.write", path, 0, data)

    def lookup(self, guest: int, name: bytes, parent: int = 1) -> int:
        return self.ok("LOOKUP", guest, parent, name).nodeid

    def open(self, guest: int, name: bytes, flags: int = 2) -> int:
        return self.ok("OPEN", guest, self.lookup(guest, name), flags)

    def mapped(self, guest: int, name: bytes, *, writable: bool = True, flags: int = 2,
               foffset: int = 0, moffset: int = 0) -> int:
        """Open `name` and map one range of it at `moffset`; returns the handle."""
        fh = self.open(guest, name, flags)
        self.ok("SETUPMAPPING", guest, fh, foffset, self.state.config.range_size, writable,
                moffset)
        return fh


@pytest.fixture
def spec() -> Callable[..., Driver]:
    """Make a Driver: spec() for the small geometry, spec(config) for another."""
    return Driver
