"""make bench-scaling: aggregate GETATTR/s of N guests, pagefs-host vs virtiofsd.

    .venv/bin/python benchmarks/scaling.py [--guests 1,2,4,8] [--runs 3] [--seconds 2]
        [--dispatch fast|python] [--out DIR]

Each guest is a process of its own with its own connection (our front-end and FUSE
client, as in bench-wire), sending GETATTRs one at a time for the same stretch of
monotonic time as every other guest. pagefs-host runs as it is deployed: one daemon
serving every guest, each in a worker process of its own (--workers process), and beside
it with every guest on a thread of the daemon's one process (--workers thread);
virtiofsd as it is deployed: one process per guest (per VM). The figure is the sum of the
guests' requests over the stretch, per second; the ratio is each row over virtiofsd at
the same N, in the same run (above 1 is faster). `--dispatch python` serves every
request by the Python dispatcher, as the requests the C fast path hands back are: there
the worker processes' GILs are what scales.

As a guest process: python benchmarks/scaling.py --guest SOCKET; it prints "ready",
then for each "go START END" line (CLOCK_MONOTONIC seconds) the GETATTRs it completed
between START and END; "exit" (or end of input) ends it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from harness import Case, add_output_argument, compare, print_table, record_series, run_command

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.client.virtiofsd import Virtiofsd
from pagefs.impl.protocol.constants import FUSE_ROOT_ID

START_DELAY = 0.3  # seconds between "go" and the stretch: every guest has read its line
PAGEFS, VIRTIOFSD = "pagefs-host (a worker per guest)", "virtiofsd (one per guest)"
THREADS = "pagefs-host --workers thread"


def guest(socket_path: str) -> int:
    with FuseClient.connect(socket_path, window_size=0) as client:
        for _ in range(200):  # warm up both ends
            client.getattr(FUSE_ROOT_ID)
        print("ready", flush=True)
        for line in sys.stdin:
            words = line.split()
            if words[0] != "go":
                break
            start, end = float(words[1]), float(words[2])
            while time.monotonic() < start:
                time.sleep(0.001)
            done = 0
            while time.monotonic() < end:
                client.getattr(FUSE_ROOT_ID)
                done += 1
            print(done, flush=True)
    return 0


@contextmanager
def guests(sockets: list[str]) -> Iterator[Callable[[float], float]]:
    """Start one guest process per socket; yields run(seconds) -> aggregate requests/s."""
    procs = [subprocess.Popen([sys.executable, __file__, "--guest", path], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
             for path in sockets]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a guest did not start (exit status {proc.wait()})")

        def run(seconds: float) -> float:
            start = time.monotonic() + START_DELAY
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(f"go {start} {start + seconds}\n")
                proc.stdin.flush()
            counts = []
            for proc in procs:
                assert proc.stdout is not None
                line = proc.stdout.readline().strip()
                if not line:
                    raise RuntimeError(f"a guest ended early (exit status {proc.wait()})")
                counts.append(int(line))
            return sum(counts) / seconds

        yield run
    finally:
        for proc in procs:
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.close()  # end of input: the guest leaves
                except BrokenPipeError:
                    pass
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def bench(counts: list[int], runs: int, seconds: float, dispatch: str = "fast") -> None:
    series = "scaling-getattr" + ("" if dispatch == "fast" else f"-{dispatch}")
    with tempfile.TemporaryDirectory(prefix="pagefs-bench-scaling-") as shared:
        for n in counts:
            with ExitStack() as stack:
                options = ("--dispatch", dispatch)
                host = stack.enter_context(host_daemon(shared, log_level="warn",
                                                       options=options))
                threaded = stack.enter_context(host_daemon(
                    shared, log_level="warn", options=(*options, "--workers", "thread")))
                virtiofsds = [stack.enter_context(Virtiofsd(shared, cache="none"))
                              for _ in range(n)]
                runners = {
                    VIRTIOFSD: stack.enter_context(guests([v.socket_path for v in virtiofsds])),
                    PAGEFS: stack.enter_context(guests([host.socket_path] * n)),
                    THREADS: stack.enter_context(guests([threaded.socket_path] * n)),
                }
                rows = compare([Case(name, lambda r=run: r(seconds))
                                for name, run in runners.items()], runs, baseline=VIRTIOFSD)
                print_table(f"{n} guest{'s' if n > 1 else ''}: aggregate GETATTR/s, one at a "
                            f"time per guest ({seconds:g} s stretches, --dispatch {dispatch})",
                            rows, "req/s",
                            "x virtiofsd", digits=0)
                for row in rows:
                    record_series(series, row.name, n, row.values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guest", metavar="SOCKET", help=argparse.SUPPRESS)
    parser.add_argument("--guests", default=[1, 2, 4, 8],
                        type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dispatch", choices=("fast", "python"), default="fast",
                        help="pagefs-host's --dispatch (python: every request as a "
                        "fallback is served)")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if args.guest:
        return guest(args.guest)
    return run_command("bench-scaling", args.runs,
                       lambda: bench(args.guests, args.runs, args.seconds, args.dispatch), args.out)


if __name__ == "__main__":
    sys.exit(main())
