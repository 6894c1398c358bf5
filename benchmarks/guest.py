"""Guest driver benchmark: memory per guest and read throughput, as ratios.

    .venv/bin/python benchmarks/guest.py [--size-mib 256] [--guests 4] [--runs 5]

One host file, exported by pagefs-host (and by QEMU's virtiofsd when it is there).
- SINGLE-COPY: N guest processes read the whole file at the same time and keep it
  (memprobe); the private memory each adds, through the DAX window and with the READ
  fallback, and their ratio.
- Throughput: sequential (1 MiB) and random (4 KiB) reads of the same file, warm page
  cache, through a window mapping (unsafe raw views: the memory itself; safe access:
  with fault containment), through pread (window), by READ messages (pagefs-host
  without a window, virtiofsd), each against a native mmap of the host file read in
  the same loop. Medians of --runs runs, printed as throughput ratios to native
  (1.0 is the limit).
Figures are only meaningful as ratios within one run on one machine.
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from pagefs.impl.guest.connect import connect
from pagefs.impl.guest.memprobe import memory_per_guest
from pagefs.impl.host.launcher import host_daemon
from pagefs.impl.transport.virtiofsd import Virtiofsd, VirtiofsdError

MiB = 1 << 20
SEQ_CHUNK = MiB
RANDOM_CHUNK = 4096


def _make_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(block)


def _timed(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _sequential(read_into: Callable[[memoryview, int], int], size: int) -> Callable[[], int]:
    buffer = memoryview(bytearray(SEQ_CHUNK))

    def run() -> int:
        total = 0
        for position in range(0, size, SEQ_CHUNK):
            total += read_into(buffer[: min(SEQ_CHUNK, size - position)], position)
        assert total == size, (total, size)
        return total

    return run


def _random(read_into: Callable[[memoryview, int], int], offsets: list[int]) -> Callable[[], int]:
    buffer = memoryview(bytearray(RANDOM_CHUNK))

    def run() -> int:
        total = 0
        for position in offsets:
            total += read_into(buffer, position)
        assert total == RANDOM_CHUNK * len(offsets)
        return total

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--guests", type=int, default=4)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--random-reads", type=int, default=5000)
    args = parser.parse_args(argv)
    size = args.size_mib * MiB
    window_size = max(64 * MiB, 2 * size)
    rng = random.Random(1)
    offsets = [rng.randrange(0, size // RANDOM_CHUNK) * RANDOM_CHUNK
               for _ in range(args.random_reads)]

    with tempfile.TemporaryDirectory(prefix="pagefs-bench-") as tmp, ExitStack() as stack:
        export = Path(tmp)
        _make_file(export / "big", size)
        host = stack.enter_context(host_daemon(str(export), log_level="warning"))

        print(f"SINGLE-COPY: {args.guests} guests each read a {args.size_mib} MiB file "
              f"and keep it (private memory added per guest, median)")
        window_mem = statistics.median(
            memory_per_guest(host.socket_path, "big", args.guests, "window"))
        read_mem = statistics.median(
            memory_per_guest(host.socket_path, "big", args.guests, "read"))
        print(f"  DAX window   {window_mem / MiB:9.1f} MiB")
        print(f"  READ copies  {read_mem / MiB:9.1f} MiB")
        print(f"  ratio window/READ {window_mem / read_mem:.4f}   "
              f"(READ / file size {read_mem / size:.2f})")

        fd = os.open(export / "big", os.O_RDONLY)
        stack.callback(os.close, fd)
        native = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        native_view = memoryview(native)

        def native_read(buffer: memoryview, position: int) -> int:
            n = len(buffer)
            buffer[:] = native_view[position : position + n]
            return n

        dax = stack.enter_context(connect(host.socket_path, window_size=window_size))
        handle = dax.open("big")
        mapping = dax.mmap(handle, 0, size)
        copy_share = stack.enter_context(connect(host.socket_path, window_size=0))
        copy_handle = copy_share.open("big")
        raw_views = mapping.unsafe_views()  # one per 2 MiB range, in file order
        shift = (dax.window.range_size - 1).bit_length()
        mask = dax.window.range_size - 1

        def raw_read(buffer: memoryview, position: int) -> int:
            n = len(buffer)
            buffer[:] = raw_views[position >> shift][position & mask : (position & mask) + n]
            return n

        paths: dict[str, Callable[[memoryview, int], int]] = {
            "native mmap": native_read,
            "window raw view": raw_read,
            "window mapping": lambda b, p: mapping.read_into(p, b),
            "window pread": lambda b, p: handle.pread_into(b, p),
            "pagefs READ": lambda b, p: copy_handle.pread_into(b, p),
        }
        try:
            virtiofsd = stack.enter_context(Virtiofsd(str(export), cache="none"))
            vshare = stack.enter_context(connect(virtiofsd.socket_path, window_size=0))
            vhandle = vshare.open("big")
            paths["virtiofsd READ"] = lambda b, p: vhandle.pread_into(b, p)
        except VirtiofsdError as err:
            print(f"(virtiofsd left out: {err})")

        for label, make, volume in (
            ("sequential 1 MiB reads", lambda f: _sequential(f, size), size),
            (f"random 4 KiB reads ({len(offsets)})", lambda f: _random(f, offsets),
             RANDOM_CHUNK * len(offsets)),
        ):
            print(f"\n{label}: median of {args.runs} runs, throughput vs native mmap")
            runs = {name: make(fn) for name, fn in paths.items()}
            for run in runs.values():
                run()  # warm: page cache, window ranges, allocator
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.runs):
                for name, run in runs.items():  # interleaved, so noise hits all alike
                    times[name].append(_timed(run))
            base = statistics.median(times["native mmap"])
            for name, samples in times.items():
                t = statistics.median(samples)
                print(f"  {name:16s} {volume / t / MiB:10.1f} MiB/s   ratio {base / t:.3f}")
        mapping.close()
        handle.close()
        copy_handle.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
