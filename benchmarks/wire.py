"""make bench-wire: request round trips on the real wire, as ratios.

Through our front-end and FUSE client, one request at a time: GETATTR, OPEN+RELEASE and
LOOKUP+FORGET to pagefs-host and to QEMU's C virtiofsd (cache=none), and GETATTR with
many in flight. Two baselines, measured in every run beside the cases:
- the floor, a raw eventfd ping-pong between two processes (one notification each way,
  the least any kick/call transport can do), with a bare chain through our front-end to
  an echo back-end of ours (the transport alone) beside it;
- virtiofsd, for the same request through the same front-end: pagefs-host / virtiofsd.
Ratios are taken within a run; the tables show medians and ranges over runs.

    .venv/bin/python benchmarks/wire.py [--runs 7] [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from harness import Case, compare, median_time_us, paired, print_table, run_command

from pagefs.impl import protocol as p
from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.client.virtiofsd import Virtiofsd
from pagefs.impl.protocol.constants import FUSE_ROOT_ID
from pagefs.impl.transport.frontend import REQUEST_QUEUE, VhostUserFrontend

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
FILE = b"file"  # the one file the requests name
FLOOR = "eventfd ping-pong, 2 processes (floor)"
BACKENDS = ("virtiofsd", "pagefs-host")


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
        try:
            child.wait(10)  # it ends with its connection
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if os.path.exists(path):
            os.unlink(path)


def request_kinds(client: FuseClient) -> dict[str, Callable[[], object]]:
    """One round trip of each request kind, named; LOOKUP's FORGET is on the hiprio
    queue and has no reply, so it adds the submission only."""
    nodeid = client.lookup(FUSE_ROOT_ID, FILE).nodeid

    def open_release() -> None:
        client.release(nodeid, client.open(nodeid, os.O_RDONLY).fh)

    def lookup_forget() -> None:
        client.forget(client.lookup(FUSE_ROOT_ID, FILE).nodeid, 1)

    return {
        "GETATTR": lambda: client.getattr(nodeid),
        "OPEN+RELEASE": open_release,
        "LOOKUP+FORGET": lookup_forget,
    }


def getattr_burst(client: FuseClient) -> None:
    futures = [client.submit(p.Opcode.GETATTR, FUSE_ROOT_ID, p.GetattrIn()) for _ in range(BURST)]
    for f in futures:
        f.result(30)


def bench(runs: int, calls: int) -> None:
    cases = []
    with tempfile.TemporaryDirectory(prefix="pagefs-bench-wire-") as shared, ExitStack() as stack:
        with open(os.path.join(shared, FILE.decode()), "wb") as f:
            f.write(b"x" * 4096)
        floor_call = stack.enter_context(eventfd_ping_pong())
        cases.append(Case(FLOOR, lambda: median_time_us(floor_call, calls)))
        echo = stack.enter_context(
            VhostUserFrontend.connect(stack.enter_context(echo_back_end(shared)), window_size=0)
        )
        request = bytes(56)  # the size of a GETATTR request
        cases.append(Case(
            "56-byte chain -> echo back-end of ours (transport alone)",
            lambda: median_time_us(
                lambda: echo.submit(REQUEST_QUEUE, request, 256).result(30), calls),
        ))
        paths = {
            "virtiofsd": stack.enter_context(Virtiofsd(shared, cache="none")).socket_path,
            "pagefs-host": stack.enter_context(host_daemon(shared, log_level="warn")).socket_path,
        }
        kinds = {}
        for backend, path in paths.items():
            client = stack.enter_context(FuseClient.connect(path, window_size=0))
            kinds[backend] = request_kinds(client)
            for call in kinds[backend].values():
                for _ in range(200):  # warm up both ends
                    call()
            cases.append(Case(
                f"GETATTR x{BURST} in flight -> {backend}, per request",
                lambda c=client: median_time_us(lambda: getattr_burst(c),
                                                max(3, calls // BURST)) / BURST,
            ))
        for kind in kinds["virtiofsd"]:
            for backend in BACKENDS:
                cases.append(Case(f"{kind} -> {backend}",
                                  lambda c=kinds[backend][kind]: median_time_us(c, calls)))
        rows = compare(cases, runs, baseline=FLOOR)
    print_table(f"Round trips, one at a time unless said (median call of {calls}; "
                f"medians over {runs} runs)", rows, "us", "x floor")
    pairs = [(f"{kind}", f"{kind} -> pagefs-host", f"{kind} -> virtiofsd")
             for kind in kinds["virtiofsd"]]
    pairs.append((f"GETATTR x{BURST} in flight",
                   f"GETATTR x{BURST} in flight -> pagefs-host, per request",
                   f"GETATTR x{BURST} in flight -> virtiofsd, per request"))
    print_table("pagefs-host vs virtiofsd, same front-end (time ratio; below 1 is faster)",
                paired(rows, pairs), "us pagefs", "x virtiofsd")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    return run_command("bench-wire", args.runs, lambda: bench(args.runs, args.calls))


if __name__ == "__main__":
    sys.exit(main())
