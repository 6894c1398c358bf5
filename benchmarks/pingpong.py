"""Store-to-load and eventfd latency: two processes ping-pong, pinned to two cores.

Store-to-load: each side waits until a shared 64-bit word holds the value it expects,
then stores the next one; one round trip is two store-to-load hops. The word lives
either in a memfd both processes map (the polling floor: 0.1-0.7 us), or in a host file
both map writable through their own pagefs connection and DAX window (two guests).
Eventfd: one eventfd notification each way, a blocking read waking the other process
(the floor of a transport that sleeps between requests: tens of us here).
Both sides run the same C loop (loops.py) and each is pinned to a core of its own when
there are two, so a hop crosses cores, as between two vCPUs. A spinning side yields the
CPU after 200 loads and gives up at a deadline, so a lost store cannot hang the run.

As a process: python benchmarks/pingpong.py initiator|responder memfd FD
              python benchmarks/pingpong.py initiator|responder pagefs SOCKET PATH
              python benchmarks/pingpong.py initiator|responder eventfd PING PONG
It prints "ready", then for each "go N" line runs N round trips (the initiator prints
the median round trip in ns, the responder "done"); "exit" ends it.
"""

from __future__ import annotations

import mmap
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from loops import loops

WORD_BYTES = 4096  # one page holds the word
DEADLINE = 30.0  # seconds a run may take before a side gives up


def _open_word(stack: ExitStack, kind: str, where: list[str]) -> memoryview:
    """The shared word's 8 bytes."""
    if kind == "memfd":
        memory = stack.enter_context(mmap.mmap(int(where[0]), WORD_BYTES))
        raw = memoryview(memory)
    else:
        from pagefs.impl.guest.connect import connect

        share = stack.enter_context(connect(where[0]))
        if not share.dax:
            raise SystemExit("pingpong: pagefs-host offered no DAX window")
        handle = share.open(where[1], os.O_RDWR)
        stack.callback(handle.close)
        mapping = share.mmap(handle, 0, WORD_BYTES, writable=True)
        stack.callback(mapping.close)
        raw = mapping.unsafe_memoryview()
    stack.callback(raw.release)
    word = raw[:8]
    stack.callback(word.release)
    return word


def _rounds(kind: str, word_or_fds: memoryview | tuple[int, int], initiator: bool
            ) -> Callable[[int, int], list[int]]:
    """run(first, rounds) -> the initiator's round trips in ns (empty for the responder)."""
    lib, ffi = loops().lib, loops().ffi

    def run(first: int, rounds: int) -> list[int]:
        samples = ffi.new("uint64_t[]", max(1, rounds))
        if isinstance(word_or_fds, tuple):
            status = lib.eventfd_rounds(*word_or_fds, rounds, initiator, samples)
        else:
            deadline = time.monotonic_ns() + int(DEADLINE * 1e9)
            word = ffi.cast("uint64_t *", ffi.from_buffer(word_or_fds))
            status = lib.spin_rounds(word, first, rounds, initiator, samples, deadline)
        if status:
            raise TimeoutError(f"{kind} ping-pong: the other side did not answer")
        return list(samples)[:rounds] if initiator else []

    return run


def _side(role: str, kind: str, where: list[str]) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:  # one side per core: the hop crosses cores, as between two vCPUs
        os.sched_setaffinity(0, {cpus[role == "responder"]})
    with ExitStack() as stack:
        target = ((int(where[0]), int(where[1])) if kind == "eventfd"
                  else _open_word(stack, kind, where))
        run = _rounds(kind, target, role == "initiator")
        rounds_done = 0
        print("ready", flush=True)
        for line in sys.stdin:
            command = line.split()
            if command[0] != "go":
                break
            samples = run(rounds_done, int(command[1]))
            rounds_done += int(command[1])
            print(statistics.median(samples) if samples else "done", flush=True)


def _expect_line(side: subprocess.Popen, what: str) -> str:
    line = side.stdout.readline().strip()
    if not line:
        raise RuntimeError(f"a ping-pong side ({what}) ended early, exit status {side.wait()}")
    return line


@contextmanager
def ping_pong(kind: str, *where: str, pass_fds: tuple[int, ...] = ()
              ) -> Iterator[Callable[[int], float]]:
    """Start both sides on the word at `where`; yields run(rounds) -> the median round
    trip in microseconds."""
    from pagefs.impl.client.child import reaped  # here: the sides themselves need no pagefs

    with reaped([
        subprocess.Popen([sys.executable, __file__, role, kind, *where], pass_fds=pass_fds,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for role in ("initiator", "responder")
    ]) as sides:
        for side in sides:
            _expect_line(side, "start")

        def run(rounds: int) -> float:
            for side in sides:
                side.stdin.write(f"go {rounds}\n")
                side.stdin.flush()
            median_ns = float(_expect_line(sides[0], "initiator"))
            _expect_line(sides[1], "responder")
            return median_ns / 1000

        yield run
        for side in sides:
            side.stdin.write("exit\n")
            side.stdin.close()
            if side.wait(30) != 0:
                raise RuntimeError(f"a ping-pong side ({kind}) failed")


if __name__ == "__main__":
    _side(sys.argv[1], sys.argv[2], sys.argv[3:])
