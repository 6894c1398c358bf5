"""The adaptive spin-then-sleep wait both ends share (poller.c), driven through cffi with
Python callbacks standing for a ring: real eventfds, real time, and the machine's real
count of runnable threads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from pagefs.impl.transport._vring import ffi, lib

MAX_NS = 200_000

pytestmark = pytest.mark.usefixtures("spin_whatever_else_runs")


class Ring:
    """A ring as the poller sees it: `items` stands for published entries; notifications
    are enabled or quiet as the poller asks."""

    def __init__(self) -> None:
        self.items = 0
        self.armed = True
        self.quieted = 0
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.due = 0  # monotonic ns at which an answer appears by itself (0: none)
        self._ready = ffi.callback("int(void *)", lambda _: int(self._has()))
        self._quiet = ffi.callback("void(void *)", self._on_quiet)
        self._arm = ffi.callback("int(void *)", self._on_arm)
        self.ring = ffi.new("struct poller_ring *")
        self.ring.ready, self.ring.quiet, self.ring.arm = self._ready, self._quiet, self._arm

    def _has(self) -> bool:
        return self.items > 0 or 0 < self.due <= time.monotonic_ns()

    def _on_quiet(self, _: object) -> None:
        self.armed = False
        self.quieted += 1

    def _on_arm(self, _: object) -> int:
        self.armed = True
        return int(self._has())

    def publish(self) -> None:
        """The other side: publish an entry, and notify if asked to."""
        self.items += 1
        if self.armed:
            os.eventfd_write(self.fd, 1)

    def close(self) -> None:
        os.close(self.fd)


def wait(poller, ring: Ring, timeout_ns: int, watch=ffi.NULL, nwatch: int = 0) -> int:
    return lib.poller_wait(poller, ring.ring, ring.fd, watch, nwatch, timeout_ns)


def test_ready_at_once_needs_no_spin_and_no_sleep() -> None:
    poller = ffi.new("struct poller *")
    lib.poller_init(poller, MAX_NS)
    ring = Ring()
    try:
        ring.items = 1
        assert wait(poller, ring, 0) == lib.POLLER_READY
        assert (poller.waits, poller.spun, poller.slept) == (0, 0, 0)
    finally:
        ring.close()


def test_nothing_comes_times_out_armed_and_shrinks_the_budget() -> None:
    poller = ffi.new("struct poller *")
    lib.poller_init(poller, MAX_NS)
    ring = Ring()
    try:
        before = poller.budget_ns
        assert before > 0
        assert wait(poller, ring, 5_000_000) == lib.POLLER_TIMEOUT  # 5 ms > MAX_NS
        assert ring.quieted == 1 and ring.armed  # spun quiet, then armed before sleeping
        assert poller.slept == 1 and poller.budget_ns < before
        for _ in range(8):  # waits that outlast the ceiling take the spin away entirely
            wait(poller, ring, 1_000_000)
        assert poller.budget_ns == 0
        ring.quieted = 0
        wait(poller, ring, 1_000_000)
        assert ring.quieted == 0  # no budget: it arms and sleeps without spinning
    finally:
        ring.close()


def _late_answers(poller: object, ring: Ring, rounds: int, after: float = 0.02) -> list[int]:
    """`rounds` waits each answered `after` seconds after it began (a timer publishes);
    the spin budget after each."""
    budgets = []
    for _ in range(rounds):
        ring.items = 0
        timer = threading.Timer(after, ring.publish)
        timer.start()
        assert wait(poller, ring, 10**10) == lib.POLLER_READY
        timer.join()
        budgets.append(poller.budget_ns)
    return budgets


def test_a_notification_wakes_the_sleeper_and_a_short_wait_grows_the_budget() -> None:
    poller = ffi.new("struct poller *")
    lib.poller_init(poller, 10**9)  # a ceiling no wait here passes
    ring = Ring()
    try:
        before = poller.budget_ns
        budgets = _late_answers(poller, ring, 1)
        assert poller.slept == 1 and budgets[0] > before
    finally:
        ring.close()


@pytest.mark.parametrize("sleep_in", ["ppoll", "epoll"])
def test_a_watched_fd_ends_the_wait_with_its_events(sleep_in: str) -> None:
    poller = ffi.new("struct poller *")
    lib.poller_init(poller, 0)
    ring = Ring()
    ours, theirs = socket.socketpair()
    try:
        watch = ffi.new("struct poller_watch[1]")
        watch[0].fd = ours.fileno()
        watch[0].events = 0x2000  # POLLRDHUP
        if sleep_in == "epoll":
            assert lib.poller_use_epoll(poller, ring.fd, watch, 1) == 0
        theirs.close()
        assert wait(poller, ring, 10**10, watch, 1) == lib.POLLER_EVENT
        assert watch[0].revents
        ring.items = 1  # what is ready counts before a hang-up
        assert wait(poller, ring, 10**10, watch, 1) == lib.POLLER_READY
    finally:
        lib.poller_close(poller)
        ours.close()
        ring.close()


def test_in_an_epoll_set_every_notification_wakes_the_sleeper_none_read() -> None:
    poller = ffi.new("struct poller *")
    lib.poller_init(poller, 0)  # never spins: every wait sleeps
    ring = Ring()
    fds = len(os.listdir("/proc/self/fd"))
    try:
        assert lib.poller_use_epoll(poller, ring.fd, ffi.NULL, 0) == 0
        assert poller.epfd >= 0 and len(os.listdir("/proc/self/fd")) == fds + 1
        _late_answers(poller, ring, 3, after=0.005)
        assert poller.slept == 3
        ring.items = 0  # the notifications are not read, yet none wakes a later wait
        assert wait(poller, ring, 20_000_000) == lib.POLLER_TIMEOUT
        assert os.eventfd_read(ring.fd) == 3  # all three writes still counted: none read
    finally:
        lib.poller_close(poller)
        ring.close()
    assert poller.epfd == -1 and len(os.listdir("/proc/self/fd")) == fds - 1


def _answered_in(poller: object, ring: Ring, ns: int, timeout_ns: int) -> int:
    """One wait whose answer appears `ns` after it begins (never, if 0), given up after
    `timeout_ns`; how many of the poller's spins met (0 or 1)."""
    spun = poller.spun
    ring.items = 0
    ring.due = time.monotonic_ns() + ns if ns else 0
    wait(poller, ring, timeout_ns)
    ring.due = 0
    return poller.spun - spun


def test_a_wait_within_the_ceiling_grows_the_budget_to_meet_the_next_spinning() -> None:
    """KVM's rule: a wait that outlasted the spin but not the ceiling grows the budget (to
    the whole wait, past a doubling), so the next answer as late is met spinning."""
    poller = ffi.new("struct poller *")
    lib.poller_init(poller, 10**9)
    ring = Ring()
    try:
        assert _answered_in(poller, ring, 5_000_000, 6_000_000) == 0  # slept, timed out
        assert poller.slept == 1 and poller.budget_ns >= 6_000_000
        # met spinning (thrice at most: a spin preempted past its budget misses)
        assert any(_answered_in(poller, ring, 5_000_000, 10**9) for _ in range(3))
        assert poller.spin_ns >= 4_000_000 and poller.met_ns >= 4_000_000
    finally:
        ring.close()


def test_waits_past_the_ceiling_take_the_budget_to_nothing() -> None:
    """Once waits run past the ceiling (idle time), the budget falls with each one, first
    to twice what met spins took lately, then, as that is forgotten (by a quarter a
    wait), to nothing."""
    poller = ffi.new("struct poller *")
    lib.poller_init(poller, 10_000_000)
    ring = Ring()
    try:
        _answered_in(poller, ring, 2_000_000, 3_000_000)
        assert _answered_in(poller, ring, 2_000_000, 10**9) == 1
        poller.max_ns = 1_000_000
        budgets = [poller.budget_ns]
        while budgets[-1] and len(budgets) < 100:
            _answered_in(poller, ring, 0, 2_000_000)  # nothing comes
            budgets.append(poller.budget_ns)
        assert budgets == sorted(budgets, reverse=True)
        assert budgets[1] == 1_000_000  # twice the 2 ms a spin met in, within the ceiling
        assert budgets[-1] == 0
    finally:
        ring.close()


def test_slow_answers_mixed_with_quick_ones_leave_the_quick_ones_their_spin() -> None:
    """Quick answers (0.2 ms) take turns with waits past the 5 ms ceiling: a slow wait
    halves the budget no lower than twice what the quick ones took, so once met, the
    quick ones go on being met spinning rather than after a sleep."""
    poller = ffi.new("struct poller *")
    lib.poller_init(poller, 5_000_000)
    ring = Ring()
    try:
        met = []
        for _ in range(12):
            met.append(_answered_in(poller, ring, 200_000, 1_000_000))
            _answered_in(poller, ring, 0, 8_000_000)
        assert met[0] == 0 and sum(met[2:]) >= 8, met  # a preempted spin may miss one
    finally:
        ring.close()


@pytest.fixture
def every_cpu_taken() -> Iterator[None]:
    """One busy process more than the machine has CPUs, until the gate sees them."""
    lib.poller_count_on_cpus(0)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range((os.cpu_count() or 1) + 1)]
    try:
        deadline = time.monotonic() + 30
        while not lib.poller_cpus_taken():
            assert time.monotonic() < deadline, "the busy processes were never seen runnable"
            time.sleep(0.01)
        yield
    finally:
        for child in busy:
            child.kill()
            child.wait()


def test_no_spin_while_every_cpu_is_taken(every_cpu_taken: None) -> None:
    """With more threads runnable than CPUs, a spin would take the CPU the other side
    needs: the waits sleep at once, are counted as contended, and grow nothing."""
    poller = ffi.new("struct poller *")
    lib.poller_init(poller, 10**9)
    ring = Ring()
    try:
        before = poller.budget_ns
        budgets = _late_answers(poller, ring, 5)
        assert ring.quieted == 0 and poller.spin_ns == 0
        assert poller.contended == poller.waits == poller.slept == 5
        assert budgets == [before] * 5
    finally:
        ring.close()



@pytest.mark.parametrize("yields", [0, 1])
def test_a_yielding_spin_ends_once_another_thread_takes_its_cpu(yields: int) -> None:
    """The load gate samples the machine only now and then (and is counted out here: the
    module's fixture); a yielding spin gives its CPU to a thread that wants it and stops,
    as contended. A busy process shares this thread's one CPU: without yields the spin
    runs its whole budget beside it, with them it ends at the first yield."""
    here = os.sched_getaffinity(0)
    cpu = min(here)
    busy = subprocess.Popen([sys.executable, "-c", "import os, sys\n"
                             f"os.sched_setaffinity(0, {{{cpu}}})\n"
                             "print('ready', flush=True)\nwhile True: pass"],
                            stdout=subprocess.PIPE, text=True)
    poller = ffi.new("struct poller *")
    lib.poller_init(poller, 10**9)
    poller.budget_ns = 50_000_000  # a spin of 50 ms, unless it yields
    poller.yields = yields
    ring = Ring()
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "ready"
        os.sched_setaffinity(0, {cpu})
        assert wait(poller, ring, 100_000_000) == lib.POLLER_TIMEOUT
        assert poller.contended == yields  # ended for the other thread, or not at all
    finally:
        os.sched_setaffinity(0, here)
        busy.kill()
        busy.wait()
        ring.close()
