"""Hypothesis property tests of the spec itself: every named property holds in every
state that random operation sequences reach, and no sequence raises."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pagefs.spec import REGISTRY, Config, Err, datatypes, initial_state
from pagefs.spec.explore import SMALL, candidates
from pagefs.spec.properties import PROPERTIES, Step, step_violations, violations

OPS = sorted(REGISTRY)


def _run(data: st.DataObject, config: Config, steps: int) -> None:
    state = initial_state(config)
    for name, args in (("host.create", (b"a", 0o644)), ("host.write", (b"a", 0, bytes(20))),
                       ("LOOKUP", (0, 1, b"a")), ("LOOKUP", (1, 1, b"a"))):
        state = REGISTRY[name](state, *args)[0].state
    for _ in range(steps):
        op = REGISTRY[data.draw(st.sampled_from(OPS), label="op")]
        args: list[object] = []
        guest = None
        for param in op.params:
            value = data.draw(st.sampled_from(candidates(state, param, guest, op.name)),
                              label=param.name)
            guest = value if param.kind == "GuestId" else guest
            args.append(value)
        outcomes = op(state, *args)  # never raises: failures are errnos or faults
        assert outcomes
        for outcome in outcomes:
            step = Step(state, op.name, tuple(args), outcome)
            assert not step_violations(step), (op.name, args, step_violations(step))
            assert not violations(outcome.state), (op.name, args, violations(outcome.state))
            if isinstance(outcome.result, Err):
                assert outcome.state == state
        state = outcomes[data.draw(st.integers(0, len(outcomes) - 1), label="outcome")].state


@settings(max_examples=150)
@given(st.data())
def test_named_properties_hold_along_random_sequences(data: st.DataObject) -> None:
    _run(data, SMALL, 25)


@settings(max_examples=60)
@given(st.data())
def test_named_properties_hold_in_a_read_only_export(data: st.DataObject) -> None:
    _run(data, replace(SMALL, read_only=True), 20)


def _is_bytes(kind: str) -> bool:
    """Whether a parameter kind is one of the spec's bytes NewTypes (Name, XattrName, ...)."""
    return getattr(getattr(datatypes, kind, None), "__supertype__", None) is bytes


@settings(max_examples=60)
@given(st.data())
def test_arbitrary_arguments_never_raise(data: st.DataObject) -> None:
    """Not just the candidates: any ints and bytes give outcomes, never an exception."""
    state = initial_state(SMALL)
    for _ in range(8):
        op = REGISTRY[data.draw(st.sampled_from(OPS))]
        args = []
        for param in op.params:
            if param.kind == "GuestId":
                value = data.draw(st.integers(0, SMALL.guests - 1))
            elif _is_bytes(param.kind):
                value = data.draw(st.binary(max_size=12))
            elif param.kind == "bool":
                value = data.draw(st.booleans())
            else:
                value = data.draw(st.integers(-40, 200))
            if param.optional and data.draw(st.booleans()):
                value = None
            args.append(value)
        outcomes = op(state, *args)
        assert outcomes
        state = outcomes[0].state
    assert not violations(state)


def test_every_property_has_a_definition_and_a_predicate() -> None:
    assert len(PROPERTIES) == 17
    for prop in PROPERTIES:
        assert prop.definition and (prop.invariant or prop.step)
