"""Adaptive polling on real rings: a front-end and a back-end of ours in this process,
real eventfds and guest memory. The budget rules are tested apart from the load gate
(this machine may be busy): spinning counts on more CPUs than anything could take."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pagefs.impl.transport.frontend import HIPRIO_QUEUE, REQUEST_QUEUE, VhostUserFrontend

from .conftest import ThreadBackend

pytestmark = pytest.mark.usefixtures("spin_whatever_else_runs")


def _serve(thread_backend: Callable[..., ThreadBackend], sock_path: str, spin_max_ns: int,
           spin_ns: int, requests: Callable[[VhostUserFrontend], None]
           ) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Runs `requests` through a front-end; the device's request and hiprio queue
    counters once stopped, and the front-end's request-queue poller."""
    tb = thread_backend(window_size=0, spin_max_ns=spin_max_ns)
    with VhostUserFrontend.connect(sock_path, window_size=0, spin_ns=spin_ns) as fe:
        requests(fe)
        front = fe.poll_stats(REQUEST_QUEUE)
    assert tb.join()
    assert tb.backend is not None
    return tb.backend.queue_stats(REQUEST_QUEUE), tb.backend.queue_stats(HIPRIO_QUEUE), front


def test_back_to_back_requests_are_met_spinning_on_both_ends(
        thread_backend: Callable[..., ThreadBackend], sock_path: str) -> None:
    """With ceilings no wait here reaches, each side's budget doubles until its spin
    covers the other side's time: the device's the front-end's think time between
    requests, the front-end's the device's service; then the waits are met spinning.
    The hiprio queue, which nothing was sent on, never spun."""
    def back_to_back(fe: VhostUserFrontend) -> None:
        for k in range(300):
            assert fe.call(REQUEST_QUEUE, b"%d" % k, 64) == b"echo:%d" % k

    device, hiprio, front = _serve(thread_backend, sock_path, 10**9, 10**9, back_to_back)
    assert device["served"] + device["passed"] == 300
    assert device["spun"] > 0 and device["budget_ns"] > 2000 and device["spin_ns"] > 0
    assert front["spun"] > 0 and front["spin_ns"] > 0
    assert hiprio["spin_ns"] == 0


def test_a_guest_that_idles_takes_the_devices_budget_to_nothing(
        thread_backend: Callable[..., ThreadBackend], sock_path: str) -> None:
    """Waits past the ceiling (the guest pauses 5 ms, the ceiling is 1 ms) take the budget
    down each time, to nothing: an idle guest's device spins no more."""
    def back_to_back_then_idle(fe: VhostUserFrontend) -> None:
        for _ in range(100):
            fe.call(REQUEST_QUEUE, b"x", 64)
        for _ in range(40):
            time.sleep(0.005)
            fe.call(REQUEST_QUEUE, b"x", 64)

    device, _, _ = _serve(thread_backend, sock_path, 1_000_000, 10**9, back_to_back_then_idle)
    assert device["spin_ns"] > 0  # it did spin while the guest was busy
    assert device["budget_ns"] == 0


def test_a_ceiling_of_nothing_never_spins(
        thread_backend: Callable[..., ThreadBackend], sock_path: str) -> None:
    def back_to_back(fe: VhostUserFrontend) -> None:
        for _ in range(100):
            fe.call(REQUEST_QUEUE, b"x", 64)

    device, _, front = _serve(thread_backend, sock_path, 0, 0, back_to_back)
    assert device["spin_ns"] == front["spin_ns"] == 0
    assert device["spun"] == front["spun"] == 0
