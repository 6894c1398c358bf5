"""make bench-wire: request round trips, mapping set-up and CPU on the real wire, as ratios.

Through our front-end and FUSE client (`FuseClient`, the path every guest request takes),
one request at a time unless said, to pagefs-host (its C fast path, and with --dispatch
python) and to QEMU's C virtiofsd (cache=none),
each in its own process, beside the same operation on the host directory (native):
- GETATTR, OPEN+RELEASE, LOOKUP, FORGET (FUSE gives it no reply: the client queues it
  and returns, so its row is the submission; its completion, reaped by the front-end's
  background thread, is in the front-end CPU of LOOKUP+FORGET), CREATE+RELEASE+UNLINK;
  GETATTR with 64 in flight;
- references: two processes ping-ponging on a shared word (the polling floor) and by
  eventfd (one wake-up each way), both in C and pinned to two cores; a bare chain to an
  echo back-end of ours through the same `call` path (the transport alone);
- mapping set-up: SETUPMAPPING of a 2 MiB range and REMOVEMAPPING of a reclaim's batch,
  `Share.mmap` of a 2 MiB range already in the window and not (window = file/4, so
  reclaims happen), against a native mmap/munmap of the host file;
- the API README shows, one call at a time: `connect` (+ disconnect), `Share.open`+close,
  `Share.stat`, `Handle.pread` and `Handle.pread_into` of 4 KiB, on pagefs-host (with its
  DAX window) and virtiofsd, against the same system calls on the host directory;
- CPU per GETATTR of the daemon (every thread and child) and of the front-end (this
  process), the front-end's per LOOKUP+FORGET and per bare chain to the echo back-end,
  and the daemon's CPU while its guest idles.
Ratios are taken within a run; the tables show medians and ranges over runs.

    .venv/bin/python benchmarks/wire.py [--runs 7] [--calls 2000] [--idle-seconds 2]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from cpu import tree_cpu_ns
from harness import (
    Row,
    add_output_argument,
    compare_groups,
    median_time_us,
    paired,
    print_table,
    record_samples,
    run_command,
    time_samples_us,
)
from pingpong import ping_pong

from pagefs.impl import protocol as p
from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.client.virtiofsd import Virtiofsd
from pagefs.impl.guest.connect import connect
from pagefs.impl.guest.share import Share
from pagefs.impl.protocol.constants import FUSE_ROOT_ID
from pagefs.impl.transport.frontend import REQUEST_QUEUE, VhostUserFrontend

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
MiB = 1 << 20
BURST = 64  # below the queue size (128), so submitters never wait for room
FILE = b"file"  # the one file the requests name
MAPPED = "mapped"  # a sparse file for the mapping rows
RANGE = 2 * MiB  # one window range
RECLAIM_BATCH = 10  # ranges per reclaim (the window's REMOVEMAPPING batch)
NATIVE, VIRTIOFSD, PAGEFS = "native", "virtiofsd", "pagefs-host"
# pagefs-host without its C fast path: every request through the Python dispatcher
PAGEFS_PY = "pagefs-host --dispatch python"
BACKENDS = (VIRTIOFSD, PAGEFS, PAGEFS_PY)
POLL_FLOOR = "shared-word ping-pong, 2 pinned processes (polling floor)"
EVENTFD = "eventfd ping-pong, 2 pinned processes (one wake-up each way)"
KINDS = ("GETATTR", "OPEN+RELEASE", "LOOKUP", "FORGET", "CREATE+RELEASE+UNLINK")
ECHO_CPU = "front-end CPU per 56-byte chain -> echo back-end of ours"
CLEANUP = "cleanup"  # untimed steps that undo a timed one (a created node's FORGET)
SLEPT = "front-end reply waits that slept, %"


@contextmanager
def echo_back_end(directory: str) -> Iterator[str]:
    """Our back-end with an echo handler in its own process; yields its socket path."""
    path = os.path.join(directory, "echo.sock")
    child = subprocess.Popen([sys.executable, "-c", ECHO, path], stdout=subprocess.PIPE, text=True)
    try:
        if child.stdout is None or child.stdout.readline().strip() != "ready":
            raise RuntimeError("the echo back-end did not start")
        yield path
    finally:
        if child.stdout is not None:
            child.stdout.close()
        try:
            child.wait(10)  # it ends with its connection
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if os.path.exists(path):
            os.unlink(path)


def request_kinds(client: FuseClient) -> dict[str, Callable[[], object]]:
    """One of each request kind, named, in the order they are timed in turns; LOOKUP's
    reference is dropped by the FORGET timed next, CREATE's by an untimed FORGET."""
    nodeid = client.lookup(FUSE_ROOT_ID, FILE).nodeid
    looked_up: list[int] = []
    created: list[int] = []

    def open_release() -> None:
        client.release(nodeid, client.open(nodeid, os.O_RDONLY).fh)

    def create_release_unlink() -> None:
        out = client.create(FUSE_ROOT_ID, b"new", os.O_RDWR | os.O_CREAT | os.O_EXCL)
        client.release(out.entry.nodeid, out.open.fh)
        client.unlink(FUSE_ROOT_ID, b"new")
        created.append(out.entry.nodeid)

    return {
        "GETATTR": lambda: client.getattr(nodeid),
        "OPEN+RELEASE": open_release,
        "LOOKUP": lambda: looked_up.append(client.lookup(FUSE_ROOT_ID, FILE).nodeid),
        "FORGET": lambda: client.forget(looked_up.pop(), 1),
        "CREATE+RELEASE+UNLINK": create_release_unlink,
        CLEANUP: lambda: client.forget(created.pop(), 1),
    }


def native_kinds(directory: str) -> dict[str, Callable[[], object]]:
    """The same operations on the host directory, by system calls."""
    path, new = os.path.join(directory, FILE.decode()), os.path.join(directory, "new-native")
    fd = os.open(path, os.O_RDONLY)  # closed with the process: it is only read

    def create_close_unlink() -> None:
        os.close(os.open(new, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644))
        os.unlink(new)

    return {
        "GETATTR": lambda: os.fstat(fd),
        "OPEN+RELEASE": lambda: os.close(os.open(path, os.O_RDONLY)),
        "LOOKUP": lambda: os.stat(path),
        "CREATE+RELEASE+UNLINK": create_close_unlink,
    }


def getattr_burst(client: FuseClient) -> None:
    futures = [client.submit(p.Opcode.GETATTR, FUSE_ROOT_ID, p.GetattrIn()) for _ in range(BURST)]
    for f in futures:
        f.result(30)


def timed_kinds(target: str, kinds: dict[str, Callable[[], object]], calls: int
                ) -> Callable[[], dict[str, float]]:
    """One run: every kind `calls` times in turns; medians, samples kept for the charts."""
    def measure() -> dict[str, float]:
        medians = {}
        for kind, samples in time_samples_us(kinds, calls).items():
            if kind != CLEANUP:
                record_samples("latency", f"{kind} -> {target}", samples)
                medians[f"{kind} -> {target}"] = statistics.median(samples)
        return medians

    return measure


def with_slept_share(backend: str, client: FuseClient,
                     measure: Callable[[], dict[str, float]]) -> Callable[[], dict[str, float]]:
    """`measure`, plus the share of the front-end's reply waits on the request queue that
    slept during it (VhostUserFrontend.poll_stats), in %: the state the one-at-a-time rows
    were taken in. A reply the spin met costs no wake-up; one slept for costs a vCPU's
    wake-up, tens of us here, and a budget at nothing stays there while every wait sleeps
    past the spin's ceiling (docs/BENCHMARKS.md), so a row can differ by that much from
    one run of the same code to the next."""
    def run() -> dict[str, float]:
        before = client.frontend.poll_stats(REQUEST_QUEUE)
        out = measure()
        after = client.frontend.poll_stats(REQUEST_QUEUE)
        waits = after["waits"] - before["waits"]
        # nan, not 0 %, when no wait was counted: nothing then says the waits spun
        out[f"{SLEPT} -> {backend}"] = (
            100 * (after["slept"] - before["slept"]) / waits if waits else float("nan"))
        return out

    return run


def mapping_rows(stack: ExitStack, shared: str, host_path: str, calls: int
                 ) -> list[Callable[[], dict[str, float]]]:
    """Measures of mapping set-up and reclaim: on the wire, through the API, natively."""
    path = os.path.join(shared, MAPPED)
    client = stack.enter_context(FuseClient.connect(host_path))
    window = client.window
    if window is None or window.size < RECLAIM_BATCH * RANGE:
        raise RuntimeError("pagefs-host offered no DAX window of 10 ranges")
    nodeid = client.lookup(FUSE_ROOT_ID, MAPPED.encode()).nodeid
    fh = client.open(nodeid, os.O_RDONLY).fh
    rounds = max(3, calls // (4 * RECLAIM_BATCH))

    def wire() -> dict[str, float]:
        setups, removes = [], []
        for _ in range(rounds):
            for slot in range(RECLAIM_BATCH):
                start = time.perf_counter_ns()
                client.setupmapping(nodeid, fh, slot * RANGE, RANGE, False, slot * RANGE)
                setups.append((time.perf_counter_ns() - start) / 1000)
            batch = [(slot * RANGE, RANGE) for slot in range(RECLAIM_BATCH)]
            start = time.perf_counter_ns()
            client.removemapping(batch)
            removes.append((time.perf_counter_ns() - start) / 1000)
        record_samples("latency", f"SETUPMAPPING 2 MiB -> {PAGEFS}", setups)
        return {"SETUPMAPPING 2 MiB": statistics.median(setups),
                f"REMOVEMAPPING of {RECLAIM_BATCH} ranges (one reclaim)":
                    statistics.median(removes)}

    fd = os.open(path, os.O_RDONLY)
    stack.callback(os.close, fd)

    def native_map() -> None:
        mmap.mmap(fd, RANGE, prot=mmap.PROT_READ).close()

    # Share.mmap of a range not in the window: the file is 4x the window, visited range
    # by range, so every call sets a range up and some reclaim first.
    share = stack.enter_context(connect(host_path, window_size=window.size))
    handle = share.open(MAPPED)
    stack.callback(handle.close)
    ranges = 4 * window.size // RANGE
    os.truncate(path, ranges * RANGE)
    visit = iter(range(1 << 62))

    def api_miss() -> None:
        share.mmap(handle, next(visit) % ranges * RANGE, RANGE).close()

    def api_hit() -> None:
        share.mmap(handle, 0, RANGE).close()

    def api() -> dict[str, float]:
        samples = time_samples_us({"miss": api_miss, "hit": api_hit}, calls // 4)
        record_samples("latency", f"Share.mmap 2 MiB (miss) -> {PAGEFS}", samples["miss"])
        return {"Share.mmap+close 2 MiB, in the window": statistics.median(samples["hit"]),
                "Share.mmap+close 2 MiB, not in it (window = file/4)":
                    statistics.median(samples["miss"])}

    def native() -> dict[str, float]:
        samples = time_samples_us({"map": native_map}, calls)["map"]
        for kind in ("SETUPMAPPING 2 MiB", "Share.mmap 2 MiB (miss)"):  # the chart's peer
            record_samples("latency", f"{kind} -> {NATIVE}", samples)
        return {"native mmap+munmap 2 MiB of the host file": statistics.median(samples)}

    return [native, wire, api]


def api_kinds(share: Share) -> dict[str, Callable[[], object]]:
    """README's API, one call each (the 4 KiB file, read from its start)."""
    handle = share.open(FILE.decode())
    buffer = memoryview(mmap.mmap(-1, 4096))
    return {
        "Share.open+close": lambda: share.open(FILE.decode()).close(),
        "Share.stat": lambda: share.stat(FILE.decode()),
        "Handle.pread 4 KiB": lambda: handle.pread(4096, 0),
        "Handle.pread_into 4 KiB": lambda: handle.pread_into(buffer, 0),
    }


def native_api(directory: str) -> dict[str, Callable[[], object]]:
    path = os.path.join(directory, FILE.decode())
    fd = os.open(path, os.O_RDONLY)  # closed with the process: it is only read
    buffer = memoryview(mmap.mmap(-1, 4096))
    return {
        "Share.open+close": lambda: os.close(os.open(path, os.O_RDONLY)),
        "Share.stat": lambda: os.stat(path),
        "Handle.pread 4 KiB": lambda: os.pread(fd, 4096, 0),
        "Handle.pread_into 4 KiB": lambda: os.preadv(fd, [buffer], 0),
    }


def api_rows(stack: ExitStack, shared: str, host_path: str, calls: int
             ) -> list[Callable[[], dict[str, float]]]:
    """README's API against the same system calls natively (virtiofsd serves one
    connection: a Share of its own), and connect+disconnect to pagefs-host."""
    virtiofsd = stack.enter_context(Virtiofsd(shared, cache="none"))
    targets = {NATIVE: native_api(shared),
               VIRTIOFSD: api_kinds(stack.enter_context(connect(virtiofsd.socket_path))),
               PAGEFS: api_kinds(stack.enter_context(connect(host_path)))}
    connects = max(5, calls // 100)

    def connect_once(window: int | None) -> None:
        connect(host_path, window_size=window).disconnect()

    return [
        *(timed_kinds(target, kinds, calls) for target, kinds in targets.items()),
        lambda: {f"connect+disconnect, DAX window -> {PAGEFS}":
                     median_time_us(lambda: connect_once(None), connects),
                 f"connect+disconnect, no window -> {PAGEFS}":
                     median_time_us(lambda: connect_once(0), connects)},
    ]


def cpu_per_request(backend: str, pid: int, client: FuseClient, calls: int
                    ) -> Callable[[], dict[str, float]]:
    """One run: `calls` GETATTRs one at a time; CPU of the daemon and of this process
    (the front-end and the client) per request, in us."""
    def measure() -> dict[str, float]:
        daemon, front = tree_cpu_ns(pid), time.process_time_ns()
        for _ in range(calls):
            client.getattr(FUSE_ROOT_ID)
        out = {f"daemon CPU per GETATTR -> {backend}":
                   (tree_cpu_ns(pid) - daemon) / calls / 1000,
               f"front-end CPU per GETATTR -> {backend}":
                   (time.process_time_ns() - front) / calls / 1000}
        front = time.process_time_ns()
        for _ in range(calls):
            client.forget(client.lookup(FUSE_ROOT_ID, FILE).nodeid, 1)
        client.settle()  # every FORGET's completion is counted, in whichever thread
        out[f"front-end CPU per LOOKUP+FORGET -> {backend}"] = (
            (time.process_time_ns() - front) / calls / 1000)
        return out

    return measure


def idle_cpu(pids: dict[str, int], seconds: float) -> Callable[[], dict[str, float]]:
    """One run: each daemon's CPU, in % of one core, while its connected guest idles."""
    def measure() -> dict[str, float]:
        before = {name: tree_cpu_ns(pid) for name, pid in pids.items()}
        start = time.monotonic_ns()
        time.sleep(seconds)
        elapsed = time.monotonic_ns() - start
        return {f"idle daemon CPU, % of a core -> {name}":
                    100 * (tree_cpu_ns(pid) - before[name]) / elapsed
                for name, pid in pids.items()}

    return measure


def bench(runs: int, calls: int, idle_seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="pagefs-bench-wire-") as shared, ExitStack() as stack:
        with open(os.path.join(shared, FILE.decode()), "wb") as f:
            f.write(b"x" * 4096)
        with open(os.path.join(shared, MAPPED), "wb") as f:
            f.truncate(RECLAIM_BATCH * RANGE)  # sparse: mappings need no data
        word = os.memfd_create("pagefs-bench-word")
        stack.callback(os.close, word)
        os.ftruncate(word, 4096)
        ping, pong = os.eventfd(0), os.eventfd(0)
        for fd in (ping, pong):
            stack.callback(os.close, fd)
        floors = {
            POLL_FLOOR: stack.enter_context(ping_pong("memfd", str(word), pass_fds=(word,))),
            EVENTFD: stack.enter_context(
                ping_pong("eventfd", str(ping), str(pong), pass_fds=(ping, pong))),
        }
        echo = stack.enter_context(
            VhostUserFrontend.connect(stack.enter_context(echo_back_end(shared)), window_size=0)
        )
        request = bytes(56)  # the size of a GETATTR request
        daemons = {
            VIRTIOFSD: stack.enter_context(Virtiofsd(shared, cache="none")),
            PAGEFS: stack.enter_context(host_daemon(shared, log_level="warn")),
            PAGEFS_PY: stack.enter_context(host_daemon(shared, log_level="warn",
                                                       options=("--dispatch", "python"))),
        }
        pids = {name: d.process.pid for name, d in daemons.items() if d.process is not None}
        clients = {name: stack.enter_context(FuseClient.connect(d.socket_path, window_size=0))
                   for name, d in daemons.items()}
        measures = [lambda: {name: run(calls) for name, run in floors.items()},
                    lambda: {"56-byte chain -> echo back-end of ours (transport alone)":
                             median_time_us(lambda: echo.call(REQUEST_QUEUE, request, 256),
                                            calls)},
                    timed_kinds(NATIVE, native_kinds(shared), calls)]
        for backend, client in clients.items():
            kinds = request_kinds(client)
            for _ in range(200):  # warm up both ends
                for call in kinds.values():
                    call()
            measures.append(with_slept_share(backend, client,
                                             timed_kinds(backend, kinds, calls)))
            measures.append(lambda c=client, b=backend: {
                f"GETATTR x{BURST} in flight, per request -> {b}":
                    median_time_us(lambda: getattr_burst(c), max(3, calls // BURST)) / BURST})
        measured = compare_groups(measures, runs, baseline=POLL_FLOOR)
        rows = [row for row in measured if not row.name.startswith(SLEPT)]
        print_table(f"Round trips, one at a time unless said (median call of {calls}; "
                    f"medians over {runs} runs)", rows, "us", "x polling")
        print_table("Front-end reply waits that slept during those round trips (% of waits "
                    "not answered at once; the rest met spinning)",
                    no_ratio([row for row in measured if row.name.startswith(SLEPT)]),
                    "% slept", "", digits=0)
        pairs = []
        for ours in (PAGEFS, PAGEFS_PY):
            tag = "" if ours == PAGEFS else " (--dispatch python)"
            pairs += [(kind + tag, f"{kind} -> {ours}", f"{kind} -> {VIRTIOFSD}")
                      for kind in KINDS]
            pairs.append((f"GETATTR x{BURST} in flight{tag}", f"GETATTR x{BURST} in flight, "
                          f"per request -> {ours}", f"GETATTR x{BURST} in flight, per request "
                          f"-> {VIRTIOFSD}"))
        print_table("pagefs-host vs virtiofsd, same front-end (time ratio; below 1 is faster)",
                    paired(rows, pairs), "us pagefs", "x virtiofsd")
        print_table("vs native (the same operation by system calls on the host directory)",
                    paired(rows, vs_native(rows)), "us", "x native")

        api = compare_groups(api_rows(stack, shared, daemons[PAGEFS].socket_path, calls), runs,
                             baseline=f"Share.stat -> {NATIVE}")
        print_table("README's API, one call at a time (median call)",
                    paired(api, vs_native(api)), "us", "x native")
        print_table("connect+disconnect to pagefs-host (median of a few)",
                    paired(api, [(row.name, row.name, f"connect+disconnect, no window -> "
                                  f"{PAGEFS}") for row in api if "connect" in row.name]),
                    "us", "x no window")

        mapping = compare_groups(mapping_rows(stack, shared, daemons[PAGEFS].socket_path, calls),
                                 runs, baseline="native mmap+munmap 2 MiB of the host file")
        print_table("Mapping set-up and reclaim, pagefs-host (2 MiB ranges; median call)",
                    mapping, "us", "x native")

        def echo_cpu() -> dict[str, float]:
            front = time.process_time_ns()
            for _ in range(calls):
                echo.call(REQUEST_QUEUE, request, 256)
            return {ECHO_CPU: (time.process_time_ns() - front) / calls / 1000}

        cpu = compare_groups([cpu_per_request(name, pids[name], clients[name], calls)
                              for name in BACKENDS] + [echo_cpu], runs,
                             baseline=f"daemon CPU per GETATTR -> {VIRTIOFSD}")
        print_table(f"CPU per GETATTR, one at a time ({calls} per run; daemon: every thread "
                    f"and child; front-end: this process), each side vs virtiofsd's",
                    paired(cpu, [(f"{side} CPU per GETATTR -> {backend}",
                                  f"{side} CPU per GETATTR -> {backend}",
                                  f"{side} CPU per GETATTR -> {VIRTIOFSD}")
                                 for side in ("daemon", "front-end") for backend in BACKENDS]
                           + [(f"front-end CPU per LOOKUP+FORGET -> {backend}",
                               f"front-end CPU per LOOKUP+FORGET -> {backend}",
                               f"front-end CPU per LOOKUP+FORGET -> {VIRTIOFSD}")
                              for backend in BACKENDS]),
                    "us CPU", "x virtiofsd", digits=2)
        print_table("Front-end CPU per bare chain to the echo back-end (the transport alone, "
                    "through the same `call` path; the goal is <= 5 us)",
                    [row for row in cpu if row.name == ECHO_CPU], "us CPU", "x vfsd daemon",
                    digits=2)
        idle = compare_groups([idle_cpu(pids, idle_seconds)], max(1, runs // 2),
                              baseline=f"idle daemon CPU, % of a core -> {VIRTIOFSD}")
        print_table(f"Idle: daemon CPU while its one connected guest sends nothing "
                    f"({idle_seconds:g} s per run)", no_ratio(idle), "% core", "")


def vs_native(rows: list[Row]) -> list[tuple[str, str, str]]:
    """(label, row, its native peer) for every non-native row that has one."""
    names = {row.name for row in rows}
    pairs = []
    for row in rows:
        kind, _, target = row.name.rpartition(" -> ")
        if target in BACKENDS and f"{kind} -> {NATIVE}" in names:
            pairs.append((row.name, row.name, f"{kind} -> {NATIVE}"))
    return pairs


def no_ratio(rows: list[Row]) -> list[Row]:
    """Rows with no meaningful ratio (idle CPU: virtiofsd idles at 0; a share of waits):
    the ratio column repeats the value."""
    return [Row(row.name, row.values, list(row.values)) for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--idle-seconds", type=float, default=2.0)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    return run_command("bench-wire", args.runs,
                       lambda: bench(args.runs, args.calls, args.idle_seconds), args.out)


if __name__ == "__main__":
    sys.exit(main())
