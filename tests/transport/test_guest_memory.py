"""Guest memory: the sealed memfd the back-end maps, and the buffer heap carved from it."""

from __future__ import annotations

import fcntl
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagefs.impl.transport.guest_memory import BufferHeap, GuestMemory


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 5000)), max_size=120))
def test_heap_never_hands_out_overlapping_buffers_and_coalesces(ops) -> None:
    heap = BufferHeap(4096, 4096 + 64 * 1024)
    live: dict[int, int] = {}
    for free_one, size in ops:
        if free_one and live:
            addr = sorted(live)[size % len(live)]
            del live[addr]
            heap.free(addr)
            continue
        addr = heap.alloc(size)
        if addr is None:
            # nothing free is large enough now; the caller waits for frees
            continue
        assert 4096 <= addr and addr + size <= 4096 + 64 * 1024
        for other, other_size in live.items():
            assert addr + size <= other or other + other_size <= addr
        live[addr] = size
    for addr in list(live):
        heap.free(addr)
    assert heap.in_use == 0
    assert heap.alloc(64 * 1024) == 4096  # everything merged back into one extent


def test_guest_memory_is_sealed_and_bounds_checked() -> None:
    mem = GuestMemory(1 << 20)
    try:
        seals = fcntl.fcntl(mem.fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_SHRINK and seals & fcntl.F_SEAL_GROW
        with pytest.raises(PermissionError):
            os.ftruncate(mem.fd, 4096)  # the back-end may rely on the size never changing
        mem.write(100, b"guest")
        assert os.pread(mem.fd, 5, 100) == b"guest"  # the same pages the back-end maps
        with pytest.raises(ValueError):
            mem.write((1 << 20) - 2, b"over")
        with pytest.raises(ValueError):
            mem.read(-1, 4)
    finally:
        mem.close()
    with pytest.raises(ValueError):
        GuestMemory(1000)  # not a whole number of pages
