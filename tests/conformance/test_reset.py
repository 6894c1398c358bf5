"""A guest reset without unmount, judged by the suite: INIT on a live connection (RESET)
starts a new session that conforms to the spec's INIT, the old handles, nodeids and
mappings gone; on pagefs and on QEMU's C virtiofsd, each on its real daemon."""

from __future__ import annotations

from pagefs.conformance import targets
from pagefs.conformance.session import Session
from pagefs.spec import Config
from pagefs.spec.datatypes import O_RDWR

HELD = [("CREATE", (0, 1, b"a", O_RDWR, 0o644)), ("WRITE", (0, 1, 0, b"data")),
        ("OPENDIR", (0, 1))]
AFTER = [("READ", (0, 1, 0, 4)), ("READDIR", (0, 2)), ("LOOKUP", (0, 1, b"a")),
         ("OPEN", (0, 3, O_RDWR)), ("READ", (0, 3, 0, 4))]


def run(name: str, steps: list) -> list:
    with targets.factory(name) as factory:
        session = Session(factory, Config())
        try:
            return [session.step(op, args) for op, args in steps]
        finally:
            session.close()


def test_pagefs_reset_conforms_and_takes_the_window_s_mappings_too() -> None:
    mapped = [("SETUPMAPPING", (0, 1, 0, 2 << 20, True, 0)), ("LOAD", (0, 0, 4))]
    checks = run("pagefs", [*HELD, *mapped, ("INIT", (0,)), ("GETATTR", (0, 2)), *AFTER,
                            ("LOAD", (0, 0, 4))])
    assert all(c.ok for c in checks), "\n".join(c.line() for c in checks)
    observed = {c.op: c.observed for c in checks}
    assert observed["READDIR"].value == 9  # EBADF: the old directory handle is gone
    assert checks[-1].observed.kind == "fault"  # the old mapping was unmapped
    assert checks[-2].observed.value == b"data"  # the new session reads


def test_virtiofsd_accepts_a_reset_and_its_one_departure_is_its_unknown_nodeid_errno(
        root_only) -> None:
    checks = run("virtiofsd:cache=none", [*HELD, ("INIT", (0,)), ("GETATTR", (0, 2)), *AFTER])
    departures = [c for c in checks if not c.ok]
    # QEMU 7.2's virtiofsd answers a nodeid it does not know with EBADF (its NODEID row)
    assert [(c.op, c.observed.value) for c in departures] == [("GETATTR", 9)]
    assert checks[-1].ok and checks[-1].observed.value == b"data"
