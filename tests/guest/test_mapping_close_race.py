"""Reads racing Mapping.close on another thread: each read either completes with the
mapped file's own bytes or raises ValueError/OSError; it never returns bytes of the
file the window range holds next (close unpins the range, and the next mapping takes
it over), nor touches memory that is gone."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pagefs.impl.guest.connect import connect
from pagefs.impl.guest.mapping import Mapping

RANGE = 2 * 1024 * 1024
ROUNDS = 60
MINE, NEXT = 0xAA, 0xBB


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads trade the GIL as often as Python allows: the read paths that run Python
    between their checks and their copy are interleaved with close() at every point."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _whole(m: Mapping) -> bytes:
    return m.read(0, RANGE)  # one C call over the whole range


def _into(m: Mapping) -> bytes:
    buffer = bytearray(4096)
    done = m.read_into(RANGE - 4096, buffer)
    return bytes(buffer[:done])


def _byte(m: Mapping) -> bytes:
    return m.read(RANGE // 2, 1)  # the general path, in Python up to the copy


def _index(m: Mapping) -> bytes:
    return bytes([m[7]])  # type: ignore[list-item]


READS: list[Callable[[Mapping], bytes]] = [_whole, _into, _byte, _index]


def test_reads_racing_close_return_only_their_files_bytes_or_an_error(
        host, export: Path, fast_switching: None) -> None:
    (export / "mine").write_bytes(bytes([MINE]) * RANGE)
    (export / "next").write_bytes(bytes([NEXT]) * RANGE)
    wrong: list[str] = []
    outcomes = {"read": 0, "error": 0}
    # One range of window: the mapping that follows a close must take over that range.
    with connect(host.socket_path, window_size=RANGE) as share, \
            share.open("mine") as mine, share.open("next") as after:
        for _ in range(ROUNDS):
            mapping = share.mmap(mine, 0, RANGE)
            reading = [threading.Event() for _ in READS]  # each has read once: close now

            def hammer(read: Callable[[Mapping], bytes], first: threading.Event,
                       m: Mapping = mapping) -> None:
                while True:
                    try:
                        data = read(m)
                    except (ValueError, OSError):
                        outcomes["error"] += 1
                        return
                    except BaseException as err:  # noqa: BLE001 - reported by the test
                        wrong.append(f"{read.__name__}: {err!r}")
                        return
                    outcomes["read"] += 1
                    if not data or data.count(MINE) != len(data):
                        wrong.append(f"{read.__name__}: {len(data)} bytes, "
                                     f"{data.count(NEXT)} of the next file's")
                        return
                    first.set()

            threads = [threading.Thread(target=hammer, args=(r, e))
                       for r, e in zip(READS, reading, strict=True)]
            for thread in threads:
                thread.start()
            for event in reading:
                event.wait()
            mapping.close()
            with share.mmap(after, 0, RANGE) as taken_over:  # the same range, now 'next'
                assert taken_over.read(0, 2) == bytes([NEXT]) * 2
                for thread in threads:
                    thread.join()
            assert not wrong, wrong
    assert outcomes["read"] and outcomes["error"] == ROUNDS * len(READS)
