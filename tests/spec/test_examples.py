"""The worked examples of the semantics document: they keep every property, and show
what they say they show."""

from pagefs.spec import FAULT, Err, Errno, Ok
from pagefs.spec.examples import EXAMPLES, SETUP, describe, format_call, run, start
from pagefs.spec.properties import PROPERTIES, Step, step_violations, violations
from pagefs.spec.registry import REGISTRY


def _results(title: str) -> list[tuple]:
    example = next(e for e in EXAMPLES if e.title == title)
    return [results for _call, results in run(example)]


def test_every_example_keeps_every_property() -> None:
    names = {p.name for p in PROPERTIES}
    for example in EXAMPLES:
        assert set(example.properties) <= names
        state = start(example)
        for name, args in example.calls:
            outcomes = REGISTRY[name](state, *args)
            for outcome in outcomes:
                assert not step_violations(Step(state, name, args, outcome)), example.title
                assert not violations(outcome.state), example.title
            state = next((o for o in outcomes if isinstance(o.result, Ok)), outcomes[0]).state
    assert SETUP[0][0] == "host.create"


def test_examples_show_what_they_claim() -> None:
    assert _results("A host write is seen through a mapping at once")[-1] == (Ok(b"ABxy"),)
    peer = _results("A store is the host's data and every peer's, without msync")
    assert peer[-2:] == [(Ok(b"A!!D"),), (Ok(b"A!!D"),)]
    truncated = _results("The host truncates a mapped file")
    assert truncated[3] == (FAULT,) and truncated[-1] == (Ok(b"IJ\0\0"),)
    lifetime = _results("A mapping outlives RELEASE, and the file outlives unlink")
    assert lifetime[3] == (Err(Errno.EBADF),) and lifetime[6] == (Ok(b"ABCD"),)
    assert lifetime[-1] == (FAULT,)
    assert _results("RENAME over an open file")[-2:] == [(Ok(b"ABCD"),), (Ok(b"new"),)]
    read_only = _results("A read-only export")
    assert read_only[:4] == [(Err(Errno.EROFS),)] * 4 and read_only[-1] == (Ok(b"host"),)


def test_calls_and_results_read_well() -> None:
    assert format_call("OPEN", (0, 2, 0o1002)) == "OPEN(guest=0, nodeid=2, flags=O_RDWR|O_TRUNC)"
    assert format_call("host.create", (b"f", 0o644)) == "host.create(path=b'f', mode=0o644)"
    assert describe("OPEN", Ok(3)) == "fh 3" and describe("WRITE", Ok(2)) == "2 bytes"
    assert describe("LOAD", FAULT) == "FAULT" and describe("X", Err(Errno.EROFS)) == "EROFS"
