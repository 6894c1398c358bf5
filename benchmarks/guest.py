"""make bench-guest: what a guest gets from the window, as ratios to baselines.

    .venv/bin/python benchmarks/guest.py [--size-mib 256] [--guests 4] [--runs 5]
        [--memory-runs 3] [--random-reads 5000] [--rounds 2000] [--only memory,read,latency]

One host file, exported by pagefs-host, by QEMU's virtiofsd and by a FUSE mount (bindfs).
- memory (SINGLE-COPY): N guest processes read the whole file at once and keep it
  (memprobe); the private memory each adds, through the DAX window vs the READ fallback.
- read: sequential (1 MiB) and random (4 KiB) reads of the file, warm page cache,
  through the window (raw views: the memory itself; the fault-contained mapping; pread),
  by READ messages (pagefs-host without a window, virtiofsd), and through the FUSE mount
  (kernel page cache; direct_io: every read to the FUSE daemon), as throughput ratios to
  a native mmap of the host file (1.0 is the limit).
- latency: store-to-load round trip on a shared word between two guests that map the
  same page writable through pagefs, vs two processes sharing a memfd.
Every run measures the baseline and each case back to back; tables show medians and
ranges over runs. Figures are only meaningful as ratios within one invocation.
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from fuse_mount import bindfs_mount, check_bindfs
from harness import Case, compare, print_table, run_command, throughput_mib_s
from pingpong import WORD_BYTES, ping_pong

from pagefs.impl.client.host_daemon import HostDaemon, host_daemon
from pagefs.impl.client.virtiofsd import Virtiofsd, find_virtiofsd
from pagefs.impl.guest import safemem
from pagefs.impl.guest.connect import connect
from pagefs.impl.guest.memprobe import memory_per_guest

MiB = 1 << 20
SEQ_CHUNK = MiB
RANDOM_CHUNK = 4096
NATIVE = "native mmap of the host file"
SECTIONS = ("memory", "read", "latency")
Reader = Callable[[memoryview, int], int]  # read_into(buffer, position) -> bytes read


def _make_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(block)


def _sequential(read_into: Reader, size: int) -> Callable[[], int]:
    buffer = memoryview(bytearray(SEQ_CHUNK))

    def run() -> int:
        total = 0
        for position in range(0, size, SEQ_CHUNK):
            total += read_into(buffer[: min(SEQ_CHUNK, size - position)], position)
        assert total == size, (total, size)
        return total

    return run


def _random(read_into: Reader, offsets: list[int]) -> Callable[[], int]:
    buffer = memoryview(bytearray(RANDOM_CHUNK))

    def run() -> int:
        total = 0
        for position in offsets:
            total += read_into(buffer, position)
        assert total == RANDOM_CHUNK * len(offsets)
        return total

    return run


def _pread(stack: ExitStack, path: Path) -> Reader:
    fd = os.open(path, os.O_RDONLY)
    stack.callback(os.close, fd)
    return lambda buffer, position: os.preadv(fd, [buffer], position)


def bench_memory(host: HostDaemon, size: int, guests: int, runs: int) -> None:
    def per_guest_mib(via: str) -> float:
        samples = sorted(memory_per_guest(host.socket_path, "big", guests, via))
        return samples[len(samples) // 2] / MiB

    rows = compare([Case("READ fallback (copies)", lambda: per_guest_mib("read")),
                    Case("DAX window", lambda: per_guest_mib("window"))],
                   runs, baseline="READ fallback (copies)")
    print_table(f"memory: private memory added per guest, {guests} guests each holding a "
                f"{size // MiB} MiB file (median guest)", rows, "MiB", "x READ", digits=2)


def read_paths(stack: ExitStack, root: Path, host: HostDaemon, size: int) -> dict[str, Reader]:
    """Every way to read the file `big`, named; the native mmap first."""
    export = root / "export"
    fd = os.open(export / "big", os.O_RDONLY)
    stack.callback(os.close, fd)
    native = stack.enter_context(mmap.mmap(fd, size, prot=mmap.PROT_READ))
    native_view = memoryview(native)
    stack.callback(native_view.release)

    def native_read(buffer: memoryview, position: int) -> int:
        n = len(buffer)
        buffer[:] = native_view[position : position + n]
        return n

    native_base = safemem.buffer_address(native)

    dax = stack.enter_context(connect(host.socket_path, window_size=max(64 * MiB, 2 * size)))
    handle = dax.open("big")
    stack.callback(handle.close)
    mapping = dax.mmap(handle, 0, size)
    stack.callback(mapping.close)
    raw_views = mapping.unsafe_views()  # one per window range, in file order
    shift = (dax.window.range_size - 1).bit_length()
    mask = dax.window.range_size - 1

    def raw_read(buffer: memoryview, position: int) -> int:
        n = len(buffer)
        buffer[:] = raw_views[position >> shift][position & mask : (position & mask) + n]
        return n

    copy_share = stack.enter_context(connect(host.socket_path, window_size=0))
    copy_handle = copy_share.open("big")
    stack.callback(copy_handle.close)
    virtiofsd = stack.enter_context(Virtiofsd(str(export), cache="none"))
    vshare = stack.enter_context(connect(virtiofsd.socket_path, window_size=0))
    vhandle = vshare.open("big")
    stack.callback(vhandle.close)
    cached = stack.enter_context(bindfs_mount(str(export), str(root / "fuse")))
    direct = stack.enter_context(bindfs_mount(str(export), str(root / "fuse-direct"),
                                              "direct_io"))
    return {
        NATIVE: native_read,
        # the window's contained reads copy in C: this is their like-for-like native row
        "native mmap, guarded C copy": lambda b, p: safemem.read_into(native_base + p, b),
        "native pread of the host file": _pread(stack, export / "big"),
        "window, raw views": raw_read,
        "window, fault-contained mapping": lambda b, p: mapping.read_into(p, b),
        "window, pread": lambda b, p: handle.pread_into(b, p),
        "pagefs READ (no window)": lambda b, p: copy_handle.pread_into(b, p),
        "virtiofsd READ (cache=none)": lambda b, p: vhandle.pread_into(b, p),
        "FUSE mount (bindfs), pread": _pread(stack, Path(cached) / "big"),
        "FUSE mount (bindfs, direct_io), pread": _pread(stack, Path(direct) / "big"),
    }


def bench_reads(paths: dict[str, Reader], size: int, offsets: list[int], runs: int) -> None:
    for label, make, volume in (
        ("sequential 1 MiB reads", lambda f: _sequential(f, size), size),
        (f"random 4 KiB reads ({len(offsets)})", lambda f: _random(f, offsets),
         RANDOM_CHUNK * len(offsets)),
    ):
        reads = {name: make(fn) for name, fn in paths.items()}
        for read in reads.values():
            read()  # warm: page caches, window ranges, allocator
        cases = [Case(name, lambda r=read, v=volume: throughput_mib_s(r, v))
                 for name, read in reads.items()]
        print_table(f"read: {label} of a {size // MiB} MiB file, throughput",
                    compare(cases, runs, baseline=NATIVE), "MiB/s", "x native")


def bench_store_to_load(stack: ExitStack, root: Path, host: HostDaemon, rounds: int,
                        runs: int) -> None:
    (root / "export" / "word").write_bytes(bytes(WORD_BYTES))
    memfd = os.memfd_create("pagefs-bench-word")
    stack.callback(os.close, memfd)
    os.ftruncate(memfd, WORD_BYTES)
    baseline = "two processes sharing a memfd"
    runners = {
        baseline: stack.enter_context(ping_pong("memfd", str(memfd), pass_fds=(memfd,))),
        "two guests sharing a pagefs mapping": stack.enter_context(
            ping_pong("pagefs", host.socket_path, "word")),
    }
    for run in runners.values():
        run(rounds)  # warm: both sides scheduled, pages faulted in
    cases = [Case(name, lambda r=run: r(rounds)) for name, run in runners.items()]
    print_table(f"latency: store-to-load round trip on a shared word (two hops; median of "
                f"{rounds} rounds)", compare(cases, runs, baseline=baseline), "us", "x memfd",
                digits=2)


def bench(args: argparse.Namespace) -> None:
    size = args.size_mib * MiB
    rng = random.Random(1)
    offsets = [rng.randrange(0, size // RANDOM_CHUNK) * RANDOM_CHUNK
               for _ in range(args.random_reads)]
    if "read" in args.only:  # before minutes of other sections, not after
        find_virtiofsd()
        check_bindfs()
    with tempfile.TemporaryDirectory(prefix="pagefs-bench-guest-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        (root / "export").mkdir()
        _make_file(root / "export" / "big", size)
        host = stack.enter_context(host_daemon(str(root / "export"), log_level="warn"))
        if "memory" in args.only:
            bench_memory(host, size, args.guests, args.memory_runs)
        if "read" in args.only:
            with ExitStack() as readers:
                bench_reads(read_paths(readers, root, host, size), size, offsets, args.runs)
        if "latency" in args.only:
            bench_store_to_load(stack, root, host, args.rounds, args.runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--guests", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5, help="runs of the read and latency cases")
    parser.add_argument("--memory-runs", type=int, default=3)
    parser.add_argument("--random-reads", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2000, help="round trips per latency run")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        type=lambda s: s.split(","), help="sections, comma-separated")
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(SECTIONS)}")
    return run_command("bench-guest", args.runs, lambda: bench(args))


if __name__ == "__main__":
    sys.exit(main())
