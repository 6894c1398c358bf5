"""The window book (window_book.c, the one record type of a window, host and front-end
alike) against a page-by-page model; and the front-end's record of a
large mapping staying a few objects, not one per page."""

from __future__ import annotations

import errno
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagefs.impl.transport.ranges import Mapped, WindowBook
from pagefs.impl.transport.shmem_window import ShmemWindow

PAGES = 16
span = st.tuples(st.integers(0, PAGES - 1), st.integers(1, PAGES)).map(
    lambda t: (t[0], min(t[0] + t[1], PAGES))
)


book_step = st.one_of(
    st.tuples(st.just("add"), span, st.integers(0, 100), st.booleans()),
    st.tuples(st.just("remove"), span, st.just(0), st.just(False)),
    st.tuples(st.just("add, undone"), span, st.integers(0, 100), st.booleans()),
)


def book_pages(book: WindowBook) -> dict[int, tuple[tuple[int, int], int, bool]]:
    pages: dict[int, tuple[tuple[int, int], int, bool]] = {}
    previous_end = -1
    for m in book:
        assert previous_end <= m.moffset < m.end, "mappings overlap, are empty or unordered"
        previous_end = m.end
        pages.update({p: (m.owner, m.foffset + p - m.moffset, m.writable)
                      for p in range(m.moffset, m.end)})
    return pages


@given(st.lists(book_step, max_size=30))
def test_window_book_matches_a_page_model(steps) -> None:
    """add replaces and splits (each piece keeps its file offsets), remove needs a wholly
    mapped range, undo puts back exactly what an add replaced."""
    book = WindowBook()
    model: dict[int, tuple[tuple[int, int], int, bool]] = {}
    for op, (start, end), foffset, writable in steps:
        if op.startswith("add"):
            mapping = Mapped(start, end - start, (1, foffset % 3), foffset, writable)
            touched = book.add(mapping)
            if op == "add":
                model.update({p: ((1, foffset % 3), foffset + p - start, writable)
                              for p in range(start, end)})
            else:
                book.undo(mapping, touched)
        elif all(p in model for p in range(start, end)):
            book.remove(start, end)
            for p in range(start, end):
                del model[p]
        else:
            with pytest.raises(OSError) as refused:
                book.remove(start, end)
            assert refused.value.errno == errno.EINVAL
        assert book_pages(book) == model
        assert book.total() == len(model)


def test_an_empty_range_is_refused() -> None:
    with pytest.raises(ValueError):
        WindowBook().add(Mapped(4, 0, (1, 1), 0, False))


def test_a_reversed_range_is_not_removed() -> None:
    """end < start is refused, not carved into overlapping pieces."""
    book = WindowBook()
    book.add(Mapped(0, 100, (1, 1), 0, False))
    with pytest.raises(OSError) as refused:
        book.remove(50, 10)
    assert refused.value.errno == errno.EINVAL
    assert list(book) == [Mapped(0, 100, (1, 1), 0, False)]


def test_a_range_past_64_bits_is_not_mapped() -> None:
    """A guest's REMOVEMAPPING whose offset + length overflows the book's 64 bits: EINVAL
    (nothing is mapped there), as for any range not mapped, not an OverflowError."""
    book = WindowBook()
    book.add(Mapped(0, 4096, (1, 1), 0, False))
    start = (1 << 64) - 4096
    assert not book.covers(start, start + 8192)
    with pytest.raises(OSError) as refused:
        book.remove(start, start + 8192)
    assert refused.value.errno == errno.EINVAL
    assert book.total() == 4096


def test_a_large_mapping_is_recorded_in_a_few_objects(tmp_path: Path) -> None:
    """SINGLE-COPY: what the front-end keeps per mapping does not grow with its length
    (a per-page record of 256 MiB was megabytes of guest-private memory)."""
    size = 256 << 20
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: mapping it costs no memory either
    window = ShmemWindow(size)
    fd = os.open(path, os.O_RDWR)
    try:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        window.map(fd, 0, 0, size, True)
        window.map(fd, 0, size // 2, 4096, False)  # a split in the middle
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert window.mapped_bytes() == size
        assert grown < 4096
        window.unmap(0, size)
        assert window.mapped_bytes() == 0
    finally:
        os.close(fd)
        window.close()
