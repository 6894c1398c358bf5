"""The front-end's CPU per hot FUSE request, this tree's client against a baseline's.

    .venv/bin/python benchmarks/frontend_cpu.py [--baseline PYTHON] [--runs 5]
        [--calls 20000] [--out DIR]

One pagefs-host (this tree's) serves a guest process per side and run: this tree's
FuseClient, and with `--baseline` the FuseClient of the tree PYTHON imports `pagefs`
from (another checkout's .venv/bin/python: main before a change, say). The sides take
turns in every run, so each ratio (this tree / baseline) is taken under the same load.
A figure is the guest process's own CPU time (time.process_time: every thread of it,
user and system, so the kick and wake-up system calls count) per request, one request
at a time after a warm-up, in microseconds; wall time is not measured. The bare chain
row sends GETATTR's bytes through the front-end's call with no codec at all: what is
left above it is the client's Python.

As a guest process: python benchmarks/frontend_cpu.py --guest SOCKET CALLS; it prints
one JSON object, operation -> CPU us per request. It uses only FuseClient's public
methods, so that a baseline tree runs it as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from harness import Row, add_output_argument, compare_groups, paired, print_table, run_command

from pagefs.impl.client.host_daemon import host_daemon

HERE = os.path.abspath(__file__)
FILE = b"file"
WARM_UP = 500
OPERATIONS = ("bare GETATTR chain (no codec)", "GETATTR", "LOOKUP", "OPEN+RELEASE",
              "READ 4 KiB", "WRITE 4 KiB", "CREATE+RELEASE+UNLINK+FORGET")
THIS, BASELINE = "this tree", "baseline"


def guest(socket_path: str, calls: int) -> int:
    from pagefs.impl.client.fuse_client import FuseClient

    with FuseClient.connect(socket_path, window_size=0) as client:
        nodeid = client.lookup(1, FILE).nodeid
        fh = client.open(nodeid, os.O_RDWR).fh
        page = bytes(4096)
        # GETATTR of the root, as fuse_in_header + fuse_getattr_in: the request path alone
        bare = struct.pack("<IIQQIIIIIIQ", 56, 3, 1 << 40, 1, os.getuid(), os.getgid(),
                           os.getpid(), 0, 0, 0, 0)

        def create_release_unlink() -> None:
            entry = client.create(1, b"new", os.O_CREAT | os.O_RDWR)
            client.release(entry.entry.nodeid, entry.open.fh)
            client.unlink(1, b"new")
            client.forget(entry.entry.nodeid, 1)

        def open_release() -> None:
            client.release(nodeid, client.open(nodeid, os.O_RDONLY).fh)

        ops: dict[str, Callable[[], object]] = {
            OPERATIONS[0]: lambda: client.frontend.call(1, bare, 4096 + 16),
            OPERATIONS[1]: lambda: client.getattr(1),
            OPERATIONS[2]: lambda: client.lookup(1, FILE),
            OPERATIONS[3]: open_release,
            OPERATIONS[4]: lambda: client.read(nodeid, fh, 0, 4096),
            OPERATIONS[5]: lambda: client.write(nodeid, fh, 0, page),
            OPERATIONS[6]: create_release_unlink,
        }
        out = {}
        for name, op in ops.items():
            for _ in range(WARM_UP):
                op()
            start = time.process_time_ns()
            for _ in range(calls):
                op()
            out[name] = (time.process_time_ns() - start) / calls / 1000
        client.forget(nodeid, 1 + WARM_UP + calls)  # every LOOKUP's reference
        client.release(nodeid, fh)
        client.settle()
    print(json.dumps(out), flush=True)
    return 0


def side(python: str, label: str, socket_path: str, calls: int
         ) -> Callable[[], dict[str, float]]:
    def measure() -> dict[str, float]:
        done = subprocess.run([python, HERE, "--guest", socket_path, str(calls)],
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode:
            raise RuntimeError(f"{label} guest failed: {done.stderr[-2000:]}")
        figures = json.loads(done.stdout.splitlines()[-1])
        return {f"{name} -> {label}": value for name, value in figures.items()}
    return measure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", metavar="PYTHON",
                        help="a python whose `pagefs` is the tree to compare against")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--guest", nargs=2, metavar=("SOCKET", "CALLS"), help=argparse.SUPPRESS)
    add_output_argument(parser)
    args = parser.parse_args()
    if args.guest:
        return guest(args.guest[0], int(args.guest[1]))

    def body() -> None:
        with tempfile.TemporaryDirectory() as shared, host_daemon(shared) as host:
            with open(os.path.join(shared, FILE.decode()), "wb") as f:
                f.write(bytes(4096))
            ours = side(sys.executable, THIS, host.socket_path, args.calls)
            groups = [ours]
            if args.baseline:
                groups.append(side(args.baseline, BASELINE, host.socket_path, args.calls))
            rows = compare_groups(groups, args.runs, baseline=f"{OPERATIONS[0]} -> {THIS}")
            if args.baseline:
                pairs = [(f"{op}: {who}", f"{op} -> {who}", f"{op} -> {BASELINE}")
                         for op in OPERATIONS for who in (THIS, BASELINE)]
                table: list[Row] = paired(rows, pairs)
                ratio = "x baseline"
            else:
                table, ratio = rows, "x bare chain"
            print_table(f"Front-end CPU per request, one at a time ({args.calls} per run; "
                        "the guest process's CPU time)", table, "us CPU", ratio, digits=2)

    return run_command("bench-frontend-cpu", args.runs, body, args.out)


if __name__ == "__main__":
    sys.exit(main())
