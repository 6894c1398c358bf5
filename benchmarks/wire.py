"""make bench-wire: request round trips on the real wire, as ratios to the floor.

The floor is the raw eventfd ping-pong between two processes (one notification each way,
the least any kick/call transport can do). Beside it: one GETATTR round trip through our
vhost-user front-end and FUSE client to QEMU's C virtiofsd and to pagefs-host, one at a
time and with many in flight. Each figure is the median over runs of the per-run median;
all of them are measured in the same invocation, so the ratios hold on a noisy machine.

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
from collections.abc import Callable
from contextlib import ExitStack

from pagefs.impl import protocol as p
from pagefs.impl.protocol.constants import FUSE_ROOT_ID
from pagefs.impl.transport.fuse_client import FuseClient
from pagefs.impl.transport.virtiofsd import Virtiofsd, VirtiofsdError

# The other process of the floor: answer every ping with a pong; a count of 2 means leave.
PONG = """
import os, sys
ping, pong = int(sys.argv[1]), int(sys.argv[2])
while os.eventfd_read(ping) < 2:
    os.eventfd_write(pong, 1)
"""
BURST = 256


def per_call_medians(call: Callable[[], object], runs: int, calls: int) -> list[float]:
    """For each run, the median time of one call, in microseconds."""
    medians = []
    for _ in range(runs):
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            call()
            samples.append(time.perf_counter_ns() - t0)
        medians.append(statistics.median(samples) / 1000)
    return medians


def eventfd_ping_pong(runs: int, calls: int) -> list[float]:
    ping, pong = os.eventfd(0), os.eventfd(0)
    child = subprocess.Popen(
        [sys.executable, "-c", PONG, str(ping), str(pong)], pass_fds=(ping, pong)
    )
    try:

        def round_trip() -> None:
            os.eventfd_write(ping, 1)
            os.eventfd_read(pong)

        return per_call_medians(round_trip, runs, calls)
    finally:
        os.eventfd_write(ping, 2)  # tells the child to leave
        child.wait(10)
        os.close(ping)
        os.close(pong)


def getattr_one_at_a_time(client: FuseClient, runs: int, calls: int) -> list[float]:
    return per_call_medians(lambda: client.getattr(FUSE_ROOT_ID), runs, calls)


def getattr_in_flight(client: FuseClient, runs: int, calls: int) -> list[float]:
    """Time per GETATTR when BURST of them are in flight at once."""
    per_request = []
    for _ in range(runs):
        samples = []
        for _ in range(max(1, calls // BURST)):
            t0 = time.perf_counter_ns()
            futures = [
                client.submit(p.Opcode.GETATTR, FUSE_ROOT_ID, p.GetattrIn()) for _ in range(BURST)
            ]
            for f in futures:
                f.result(30)
            samples.append((time.perf_counter_ns() - t0) / BURST)
        per_request.append(statistics.median(samples) / 1000)
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    rows: list[tuple[str, float]] = []
    floor = statistics.median(eventfd_ping_pong(args.runs, args.calls))
    rows.append(("eventfd ping-pong, 2 processes (floor)", floor))
    notes = []
    with tempfile.TemporaryDirectory(prefix="pagefs-bench-wire-") as shared, ExitStack() as stack:
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
            with FuseClient.connect(path, window_size=0) as client:
                for _ in range(200):  # warm up both ends
                    client.getattr(FUSE_ROOT_ID)
                one = statistics.median(getattr_one_at_a_time(client, args.runs, args.calls))
                many = statistics.median(getattr_in_flight(client, args.runs, args.calls))
            rows.append((f"GETATTR -> {name}, one at a time", one))
            rows.append((f"GETATTR -> {name}, {BURST} in flight (per request)", many))

    print(f"bench-wire: medians of {args.runs} runs x {args.calls} calls, microseconds")
    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}  {'us':>8}  {'x floor':>8}")
    for name, us in rows:
        print(f"{name:{width}}  {us:8.1f}  {us / floor:8.2f}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
