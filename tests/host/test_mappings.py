"""The host's window record against a page-by-page model: add replaces and splits,
remove needs a wholly mapped range, and the record never holds overlapping ranges."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagefs.impl.host.mappings import WindowMap, WindowMapping

PAGES = 16
span = st.tuples(st.integers(0, PAGES - 1), st.integers(1, PAGES)).map(
    lambda t: (t[0], min(t[1], PAGES - t[0])))
step = st.one_of(
    st.tuples(st.just("add"), span, st.integers(0, 100), st.booleans()),
    st.tuples(st.just("remove"), span, st.just(0), st.just(False)),
)


def pages_of(window: WindowMap) -> dict[int, tuple[int, bool]]:
    pages = {}
    for m in window:
        for p in range(m.moffset, m.end):
            assert p not in pages, "overlapping mappings"
            pages[p] = (m.foffset + p - m.moffset, m.writable)
    return pages


@given(st.lists(step, max_size=30))
def test_window_map_matches_a_page_model(steps) -> None:
    window, model = WindowMap(), {}
    for op, (start, length), foffset, writable in steps:
        end = start + length
        if op == "add":
            window.add(WindowMapping(start, length, (0, 1), foffset, writable))
            model.update({p: (foffset + p - start, writable) for p in range(start, end)})
        elif all(p in model for p in range(start, end)):
            window.remove(start, end)
            for p in range(start, end):
                del model[p]
        else:
            with pytest.raises(OSError) as caught:
                window.remove(start, end)
            assert caught.value.errno == errno.EINVAL
        assert pages_of(window) == model
        starts = [m.moffset for m in window]
        assert starts == sorted(starts)
