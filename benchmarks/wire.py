"""make bench-wire: request round trips on the real wire, as ratios to the floor.

The floor is the raw eventfd ping-pong between two processes (one notification each way,
the least any kick/call transport can do). Beside it: a bare chain through our front-end
to an echo back-end of ours (the transport alone), and GETATTR round trips through our
front-end and FUSE client to QEMU's C virtiofsd and to pagefs-host, one at a time and with
many in flight. Every run measures the floor and each case back to back;
a ratio is taken within a run, and the table shows medians over runs.

    .venv/bin/python benchmarks/wire.py [--runs 5] [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from pagefs.impl import protocol as p
from pagefs.impl.protocol.constants import FUSE_ROOT_ID
from pagefs.impl.transport.frontend import REQUEST_QUEUE, VhostUserFrontend
from pagefs.impl.transport.fuse_client import FuseClient
from pagefs.impl.transport.virtiofsd import Virtiofsd, VirtiofsdError

# The other process of the floor: answer every ping with a pong; a count of 2 means leave.
PONG = """
import os, sys
ping, pong = int(sys.argv[1]), int(sys.argv[2])
while os.eventfd_read(ping) < 2:
    os.eventfd_write(pong, 1)
"""
# A vhost-user back-end of ours that answers every chain with its own bytes: the cost of
# the transport alone, no FUSE decoding or filesystem behind it.
ECHO = """
import socket, sys
from pagefs.impl.transport.backend import VhostUserBackend
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(1)
print("ready", flush=True)
conn, _ = listener.accept()
listener.close()
VhostUserBackend(conn, window_size=0).serve(lambda request: request)
"""
BURST = 64  # below the queue size (128), so submitters never wait for room


def median_call_us(call: Callable[[], object], calls: int) -> float:
    """The median time of one call, in microseconds."""
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


@contextmanager
def eventfd_ping_pong() -> Iterator[Callable[[], None]]:
    """A round trip of one eventfd notification each way between two processes."""
    ping, pong = os.eventfd(0), os.eventfd(0)
    child = subprocess.Popen(
        [sys.executable, "-c", PONG, str(ping), str(pong)], pass_fds=(ping, pong)
    )
    try:

        def round_trip() -> None:
            os.eventfd_write(ping, 1)
            os.eventfd_read(pong)

        yield round_trip
    finally:
        os.eventfd_write(ping, 2)  # tells the child to leave
        child.wait(10)
        os.close(ping)
        os.close(pong)


@contextmanager
def echo_back_end(directory: str) -> Iterator[str]:
    """Our back-end with an echo handler in its own process; yields its socket path."""
    path = os.path.join(directory, "echo.sock")
    child = subprocess.Popen([sys.executable, "-c", ECHO, path], stdout=subprocess.PIPE, text=True)
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the echo back-end did not start")
        yield path
    finally:
        child.stdout.close()
        child.wait(10)  # it ends with its connection


def getattr_burst(client: FuseClient) -> None:
    futures = [client.submit(p.Opcode.GETATTR, FUSE_ROOT_ID, p.GetattrIn()) for _ in range(BURST)]
    for f in futures:
        f.result(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    notes: list[str] = []
    cases: list[tuple[str, Callable[[], float]]] = []
    with tempfile.TemporaryDirectory(prefix="pagefs-bench-wire-") as shared, ExitStack() as stack:
        floor_call = stack.enter_context(eventfd_ping_pong())
        echo = stack.enter_context(
            VhostUserFrontend.connect(stack.enter_context(echo_back_end(shared)), window_size=0)
        )
        request = bytes(56)  # the size of a GETATTR request
        cases.append(
            (
                "64-byte chain -> echo back-end of ours (transport alone)",
                lambda: median_call_us(
                    lambda: echo.submit(REQUEST_QUEUE, request, 256).result(30), args.calls
                ),
            )
        )
        backends: list[tuple[str, str]] = []
        try:
            daemon = stack.enter_context(Virtiofsd(shared, cache="none"))
            backends.append(("virtiofsd (QEMU 7.2, cache=none)", daemon.socket_path))
        except VirtiofsdError as e:
            notes.append(f"virtiofsd skipped: {e}")
        try:
            from pagefs.impl.host.launcher import host_daemon

            host = stack.enter_context(host_daemon(shared))
            backends.append(("pagefs-host", host.socket_path))
        except Exception as e:  # the host layer is optional for this benchmark
            notes.append(f"pagefs-host skipped: {e}")
        for name, path in backends:
            client = stack.enter_context(FuseClient.connect(path, window_size=0))
            for _ in range(200):  # warm up both ends
                client.getattr(FUSE_ROOT_ID)
            cases.append(
                (
                    f"GETATTR -> {name}, one at a time",
                    lambda c=client: median_call_us(lambda: c.getattr(FUSE_ROOT_ID), args.calls),
                )
            )
            cases.append(
                (
                    f"GETATTR -> {name}, {BURST} in flight, per request",
                    lambda c=client: (
                        median_call_us(lambda: getattr_burst(c), max(3, args.calls // BURST))
                        / BURST
                    ),
                )
            )
        # Each run measures the floor and every case back to back, so a ratio compares
        # figures taken under the same load; the table shows medians over runs.
        floors: list[float] = []
        values: dict[str, list[float]] = {name: [] for name, _ in cases}
        ratios: dict[str, list[float]] = {name: [] for name, _ in cases}
        for _ in range(args.runs):
            floor = median_call_us(floor_call, args.calls)
            floors.append(floor)
            for name, measure in cases:
                us = measure()
                values[name].append(us)
                ratios[name].append(us / floor)

    print(f"bench-wire: medians of {args.runs} runs x {args.calls} calls")
    rows = [("eventfd ping-pong, 2 processes (floor)", statistics.median(floors), 1.0)]
    rows += [(n, statistics.median(values[n]), statistics.median(ratios[n])) for n, _ in cases]
    width = max(len(name) for name, _, _ in rows)
    print(f"{'':{width}}  {'us':>8}  {'x floor':>8}")
    for name, us, ratio in rows:
        print(f"{name:{width}}  {us:8.1f}  {ratio:8.2f}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
