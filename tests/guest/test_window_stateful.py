"""The window manager driven by hypothesis through random acquire / release / forget /
reclaim sequences on a real window, beside a model of what must hold: pinned ranges
stay where they are, no file range is mapped twice, a range is free or mapped exactly
once, and a load through any mapped range gives that file's bytes at that offset."""

from __future__ import annotations

import os
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pagefs.impl.guest import safemem
from pagefs.impl.guest.window import DaxRange, DaxWindow
from pagefs.impl.host.passthrough import PassthroughFS

from .inprocess import InProcessWindow

RANGE = 16 * 1024
RANGES = 4
FILE_RANGES = 6
FILES = (b"a", b"b")


def content(name: bytes, offset: int) -> bytes:
    """Eight bytes that say which file and offset they come from."""
    return name + offset.to_bytes(7, "big")


class WindowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.TemporaryDirectory()
        for name in FILES:
            with open(os.path.join(self.root.name, name.decode()), "wb") as f:
                for offset in range(0, FILE_RANGES * RANGE, 8):
                    f.write(content(name, offset))
        self.fs = PassthroughFS(self.root.name)
        self.session = self.fs.session()
        self.nodes = {}
        for name in FILES:
            nodeid = self.session.lookup(1, name).nodeid
            self.nodes[nodeid] = (name, self.session.open(nodeid, os.O_RDWR))
        self.frontend = InProcessWindow(self.session, RANGES * RANGE)
        self.window = DaxWindow(
            self.frontend.base, self.frontend.size, self.frontend, range_size=RANGE,
            reclaim_chunk=2,
        )
        self.pins: list[tuple[DaxRange, int, int]] = []  # (range, nodeid, file offset)

    @rule(file=st.sampled_from([0, 1]), index=st.integers(0, FILE_RANGES - 1),
          writable=st.booleans(), within=st.integers(0, RANGE // 8 - 1))
    def acquire(self, file: int, index: int, writable: bool, within: int) -> None:
        nodeid = list(self.nodes)[file]
        foffset = index * RANGE + within * 8
        try:
            rng = self.window.acquire(nodeid, self.nodes[nodeid][1], foffset, writable)
        except OSError as err:
            assert len({id(r) for r, _, _ in self.pins}) == RANGES, err  # only when full
            return
        assert rng.nodeid == nodeid and rng.foffset == index * RANGE
        assert rng.writable or not writable
        self.pins.append((rng, nodeid, foffset))

    @precondition(lambda self: self.pins)
    @rule(data=st.data())
    def release(self, data) -> None:
        rng, _, _ = self.pins.pop(data.draw(st.integers(0, len(self.pins) - 1)))
        self.window.release(rng)

    @rule(file=st.sampled_from([0, 1]))
    def forget(self, file: int) -> None:
        self.window.forget(list(self.nodes)[file])

    @rule()
    def reclaim(self) -> None:
        self.window.reclaim()

    @invariant()
    def pinned_ranges_stay_mapped_and_show_their_file(self) -> None:
        for rng, nodeid, foffset in self.pins:
            assert rng.nodeid == nodeid and rng.pins > 0
            name = self.nodes[nodeid][0]
            assert safemem.read(self.window.address(rng, foffset), 8) == content(name, foffset)

    @invariant()
    def each_range_is_free_or_mapped_once(self) -> None:
        seen = []
        for nodeid in self.nodes:
            for foffset, rng in self.window.mapped(nodeid).items():
                assert rng.nodeid == nodeid and rng.foffset == foffset
                seen.append(rng.moffset)
        assert len(seen) == len(set(seen))
        assert len(seen) + self.window.free_count() == RANGES

    def teardown(self) -> None:
        self.window.close()
        self.frontend.close()
        self.session.close()
        self.fs.close()
        self.root.cleanup()


WindowMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30,
                                           deadline=None)
test_window_state_machine = WindowMachine.TestCase
