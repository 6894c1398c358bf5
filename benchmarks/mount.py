"""make bench-mount: programs' view of a pagefs export mounted by pagefs-mount, as ratios.

    .venv/bin/python benchmarks/mount.py [--size-mib 64] [--copy-mib 256] [--mounts 4]
        [--runs 5] [--memory-runs 3] [--random-reads 4000] [--calls 2000]
        [--only read,latency,memory]

One host file, seen natively and through FUSE mounts of it: pagefs-mount over
pagefs-host with files passed through (FUSE_PASSTHROUGH on the donated host fd) and with
READ/WRITE relayed, pagefs-mount over QEMU's C virtiofsd and over the Rust virtiofsd
(cache=auto, relayed: neither donates fds), and bindfs.
- read: sequential (1 MiB pread), random (4 KiB pread) and mmap (the whole mapping
  copied) reads, warm host page cache, each pass opening the file afresh (so a relayed
  mount refetches what it cached), as throughput ratios to the same read natively;
- latency: stat, and open+close, of one file (median µs), as ratios to native;
- memory (SINGLE-COPY): N mounts of one export each read the whole file; the growth of
  the host's page cache (meminfo Cached) from a cold file, against the file's size: 1.0
  is one copy for everyone, N+1 a copy per mount beside the host's.
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from fuse_mount import bindfs_mount
from harness import (
    Case,
    Row,
    add_output_argument,
    compare,
    median_time_us,
    print_table,
    run_command,
    throughput_mib_s,
)

from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.client.mount_process import pagefs_mount
from pagefs.impl.client.virtiofsd import Virtiofsd
from pagefs.impl.client.virtiofsd_rust import RustVirtiofsd

MiB = 1 << 20
NATIVE = "native (host directory)"
SECTIONS = ("read", "latency", "memory")
FILE = "data.bin"


def _make_file(path: str, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(block)


@contextmanager
def _views(export: str, work: str) -> Iterator[dict[str, str]]:
    """Every view of `export`: name -> directory."""
    with ExitStack() as stack:
        host = stack.enter_context(host_daemon(export))
        views = {NATIVE: export}

        def mount(name: str, socket_path: str, passthrough: bool = True) -> None:
            point = os.path.join(work, f"m{len(views)}")
            os.mkdir(point)
            stack.enter_context(pagefs_mount(socket_path, point, passthrough=passthrough))
            views[name] = point

        mount("pagefs-mount, passthrough", host.socket_path)
        mount("pagefs-mount, relayed", host.socket_path, passthrough=False)
        c = stack.enter_context(Virtiofsd(export, cache="auto"))
        mount("pagefs-mount / C virtiofsd", c.socket_path)
        rust = stack.enter_context(RustVirtiofsd(export, cache="auto"))
        mount("pagefs-mount / Rust virtiofsd", rust.socket_path)
        views["bindfs"] = stack.enter_context(
            bindfs_mount(export, os.path.join(work, "bindfs")))
        yield views


def _sequential(path: str, size: int) -> Callable[[], int]:
    buffer = mmap.mmap(-1, MiB)  # page-aligned, as a copy's speed depends on alignment

    def run() -> int:
        fd = os.open(path, os.O_RDONLY)
        try:
            for offset in range(0, size, MiB):
                os.preadv(fd, [buffer], offset)
        finally:
            os.close(fd)
        return size
    return run


def _random(path: str, size: int, reads: int) -> Callable[[], int]:
    offsets = [random.Random(9).randrange(size // 4096) * 4096 for _ in range(reads)]

    def run() -> int:
        fd = os.open(path, os.O_RDONLY)
        try:
            for offset in offsets:
                os.pread(fd, 4096, offset)
        finally:
            os.close(fd)
        return reads * 4096
    return run


def _mapped(path: str, size: int) -> Callable[[], int]:
    def run() -> int:
        fd = os.open(path, os.O_RDONLY)
        try:
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
                bytes(memoryview(m))  # every page faulted in and copied once
        finally:
            os.close(fd)
        return size
    return run


def _throughput(run: Callable[[], int], volume: int) -> Callable[[], float]:
    return lambda: throughput_mib_s(run, volume)


def _latency_of(call: Callable[[], object], calls: int) -> Callable[[], float]:
    return lambda: median_time_us(call, calls)


def _reads(views: dict[str, str], size: int, random_reads: int, runs: int) -> None:
    for title, make, volume in (
            ("sequential reads, 1 MiB pread", lambda p: _sequential(p, size), size),
            ("random reads, 4 KiB pread", lambda p: _random(p, size, random_reads),
             random_reads * 4096),
            ("mmap reads, the whole mapping copied", lambda p: _mapped(p, size), size)):
        cases = [Case(name, _throughput(make(os.path.join(d, FILE)), volume))
                 for name, d in views.items()]
        rows = compare(cases, runs, NATIVE)
        print_table(f"{title} ({size // MiB} MiB file, warm host cache)", rows, "MiB/s",
                    "x native")


def _latency(views: dict[str, str], calls: int, runs: int) -> None:
    def opener(path: str) -> Callable[[], None]:
        return lambda: os.close(os.open(path, os.O_RDONLY))

    for title, make in (("stat", lambda p: (lambda: os.stat(p))), ("open+close", opener)):
        cases = [Case(name, _latency_of(make(os.path.join(d, FILE)), calls))
                 for name, d in views.items()]
        rows = compare(cases, runs, NATIVE)
        print_table(f"{title} of one file (median of {calls} calls)", rows, "µs",
                    "x native", digits=2)


def _cached_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Cached:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no Cached line in /proc/meminfo")


def _drop(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _growth(export: str, points: list[str], size: int) -> float:
    """Host page-cache growth, in file sizes, while every mount reads the whole file."""
    for path in [export, *points]:
        _drop(os.path.join(path, FILE))
    before = _cached_bytes()
    for point in points:
        _sequential(os.path.join(point, FILE), size)()
    return (_cached_bytes() - before) / size


def _memory(export: str, work: str, size: int, mounts: int, runs: int) -> None:
    _make_file(os.path.join(export, FILE), size)
    rows = []
    with host_daemon(export) as host:
        for label, passthrough in (("pagefs-mount, passthrough", True),
                                   ("pagefs-mount, relayed", False), ("bindfs", None)):
            copies = []
            for _ in range(runs):
                with ExitStack() as stack:
                    points = []
                    for i in range(mounts):
                        point = os.path.join(work, f"copy{i}")
                        os.makedirs(point, exist_ok=True)
                        if passthrough is None:
                            stack.enter_context(bindfs_mount(export, point))
                        else:
                            stack.enter_context(pagefs_mount(host.socket_path, point,
                                                             passthrough=passthrough))
                        points.append(point)
                    copies.append(_growth(export, points, size))
            rows.append(Row(label, [c * size / MiB for c in copies], copies))
    print_table(f"SINGLE-COPY: {mounts} mounts each read a {size // MiB} MiB file from cold; "
                f"host page-cache growth (meminfo Cached), and in copies of the file (1.0: one "
                f"copy for all; {mounts + 1}.0: one per mount and the host's)", rows, "MiB",
                "copies", digits=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--copy-mib", type=int, default=256)
    parser.add_argument("--mounts", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory-runs", type=int, default=3)
    parser.add_argument("--random-reads", type=int, default=4000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--only", default=",".join(SECTIONS))
    add_output_argument(parser)
    args = parser.parse_args(argv)
    sections = set(args.only.split(","))
    if sections - set(SECTIONS):
        parser.error(f"--only takes {', '.join(SECTIONS)}")

    def body() -> None:
        with tempfile.TemporaryDirectory(prefix="pagefs-bench-mount.") as work:
            export = os.path.join(work, "export")
            os.mkdir(export)
            size = args.size_mib * MiB
            _make_file(os.path.join(export, FILE), size)
            if sections & {"read", "latency"}:
                with _views(export, work) as views:
                    if "read" in sections:
                        _reads(views, size, args.random_reads, args.runs)
                    if "latency" in sections:
                        _latency(views, args.calls, args.runs)
            if "memory" in sections:
                _memory(export, work, args.copy_mib * MiB, args.mounts, args.memory_runs)

    return run_command("bench-mount", args.runs, body, args.out)


if __name__ == "__main__":
    sys.exit(main())
