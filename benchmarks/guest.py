"""make bench-guest: what a guest gets from the window, as ratios to baselines.

    .venv/bin/python benchmarks/guest.py [--size-mib 256] [--guests 4] [--runs 5]
        [--memory-runs 3] [--random-reads 2000] [--rounds 2000] [--sweep-runs 3]
        [--sweep-sizes 16,64,256] [--only memory,read,larger,sweep,latency] [--out DIR]

One host file, exported by pagefs-host, by QEMU's virtiofsd and by FUSE mounts (bindfs).
- memory (SINGLE-COPY): N guest processes read the whole file at once and keep it
  (memprobe); the private memory each adds plus its page tables (VmPTE), through the
  DAX window vs the READ fallback.
- read: sequential 1 MiB and random 4 KiB reads of the file, warm page cache, into
  page-aligned reused buffers:
  - memory speed: one C loop copies from a native mmap of the host file and from the
    window's raw memory (window holding the file, set up before timing);
  - the APIs README shows (`Handle.pread_into`, `Mapping.read_into`, `Mapping.read`),
    the READ paths (pagefs-host without a window, virtiofsd) and FUSE mounts, each in
    the same Python loop as its native baseline (`os.preadv`, or a native mmap slice
    for `Mapping.read`, which returns bytes).
- larger: the file is 4x the window: `Handle.pread_into` through the window (set-up
  and reclaim included) vs the READ paths vs native pread.
- sweep (charts): sequential and random throughput against the file size (window =
  file/4) and against the window size (file fixed), window vs READ vs native.
- latency: store-to-load round trip on a shared word between two guests that map the
  same page writable through pagefs, vs two processes sharing a memfd (one C loop).
Every run measures the baseline and each case back to back; tables show medians and
ranges over runs. Figures are only meaningful as ratios within one invocation.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from fuse_mount import bindfs_mount, check_bindfs
from harness import (
    Case,
    add_output_argument,
    compare,
    paired,
    print_table,
    record_series,
    run_command,
    throughput_mib_s,
)
from loops import address, loops
from pingpong import WORD_BYTES, ping_pong

from pagefs.impl.client.host_daemon import HostDaemon, host_daemon
from pagefs.impl.client.virtiofsd import Virtiofsd, find_virtiofsd
from pagefs.impl.guest import memprobe, safemem
from pagefs.impl.guest.connect import connect
from pagefs.impl.guest.share import Handle, Share

MiB = 1 << 20
SEQ_CHUNK = MiB
RANDOM_CHUNK = 4096
RANGE = 2 * MiB  # the window's range size (connect's default)
SECTIONS = ("memory", "read", "larger", "sweep", "latency")
NATIVE_C = "native mmap, C loop"
NATIVE_PREAD = "native pread"
Reader = Callable[[memoryview, int], int]  # read_into(buffer, position) -> bytes read
Pass = Callable[[], int]  # one pass over the offsets; returns the bytes read


def _make_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(block)


def _aligned(stack: ExitStack, size: int) -> memoryview:
    """A page-aligned buffer (anonymous memory): a copy's speed must not depend on where
    malloc happened to put the destination."""
    memory = stack.enter_context(mmap.mmap(-1, size))
    view = memoryview(memory)
    stack.callback(view.release)
    return view


def _python_pass(stack: ExitStack, read_into: Reader, offsets: list[int], chunk: int) -> Pass:
    """The one Python loop every API row and its native baseline run."""
    buffer = _aligned(stack, chunk)

    def run() -> int:
        total = 0
        for position in offsets:
            total += read_into(buffer, position)
        if total != chunk * len(offsets):
            raise RuntimeError(f"short reads: {total} of {chunk * len(offsets)} bytes")
        return total

    return run


def _bytes_pass(read: Callable[[int, int], bytes], offsets: list[int], chunk: int) -> Pass:
    """The loop of an API that returns bytes (Mapping.read) and of its native peer."""
    def run() -> int:
        total = 0
        for position in offsets:
            total += len(read(position, chunk))
        return total

    return run


def _c_pass(stack: ExitStack, bases: list[int], offsets: list[int], chunk: int) -> Pass:
    """The C loop (loops.copy_offsets) over a file seen as ranges at `bases`."""
    ffi, lib = loops().ffi, loops().lib
    table = ffi.new("char *[]", [ffi.cast("char *", base) for base in bases])
    positions = ffi.new("uint64_t[]", offsets)
    dst = ffi.cast("char *", address(_aligned(stack, chunk)))
    shift = RANGE.bit_length() - 1
    return lambda: lib.copy_offsets(dst, table, shift, positions, len(offsets), chunk)


def _pread(stack: ExitStack, path: Path) -> Reader:
    fd = os.open(path, os.O_RDONLY)
    stack.callback(os.close, fd)
    return lambda buffer, position: os.preadv(fd, [buffer], position)


def _open(stack: ExitStack, share: Share, path: str) -> Handle:
    handle = share.open(path)
    stack.callback(handle.close)
    return handle


def _patterns(size: int, random_reads: int) -> dict[str, tuple[list[int], int]]:
    rng = random.Random(1)
    return {
        "sequential 1 MiB": (list(range(0, size, SEQ_CHUNK)), SEQ_CHUNK),
        f"random 4 KiB ({random_reads})": (
            [rng.randrange(0, size // RANDOM_CHUNK) * RANDOM_CHUNK for _ in range(random_reads)],
            RANDOM_CHUNK),
    }


def _measure(passes: dict[str, Pass], volume: int, runs: int, baseline: str, title: str,
             pairs: list[tuple[str, str, str]] = ()) -> dict[str, list[float]]:
    """Warm every pass, compare them over `runs`, print; returns name -> MiB/s per run."""
    for run in passes.values():
        run()  # warm: page caches, window ranges, allocator
    rows = compare([Case(name, lambda r=run: throughput_mib_s(r, volume))
                    for name, run in passes.items()], runs, baseline=baseline)
    print_table(title, rows, "MiB/s", "x native")
    if pairs:
        print_table(f"{title}: like for like", paired(rows, list(pairs)), "MiB/s", "x peer")
    return {row.name: row.values for row in rows}


# -- memory ------------------------------------------------------------------------------

def _vm_pte(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmPTE:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmPTE in /proc/PID/status")


def memory_with_page_tables(socket_path: str, path: str, guests: int, via: str) -> list[int]:
    """memprobe's guests, started at once, each holding the file; once all hold it, each
    one's added private memory plus its page tables (VmPTE, which smaps leaves out)."""
    probes = [subprocess.Popen(
        [sys.executable, "-m", "pagefs.impl.guest.memprobe", socket_path, path, "--via", via],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(guests)]
    try:
        pipes = [memprobe._pipes(probe) for probe in probes]
        first = [json.loads(out.readline()) for _, out in pipes]
        tables = [_vm_pte(probe.pid) for probe in probes]  # every guest holds the file now
        for to, _ in pipes:
            to.write("measure\nexit\n")
            to.flush()
        held = [json.loads(out.readline()) for _, out in pipes]
        for probe in probes:
            if probe.wait(timeout=120) != 0:
                raise RuntimeError(f"memprobe ({via}) failed")
    finally:
        for probe in probes:
            if probe.poll() is None:
                probe.kill()
                probe.wait()
    return [memprobe.private(h) - memprobe.private(f["before"]) + pte
            for f, h, pte in zip(first, held, tables, strict=True)]


def bench_memory(host: HostDaemon, size: int, guests: int, runs: int) -> None:
    def per_guest_mib(via: str) -> float:
        samples = sorted(memory_with_page_tables(host.socket_path, "big", guests, via))
        return samples[len(samples) // 2] / MiB

    rows = compare([Case("READ fallback (copies)", lambda: per_guest_mib("read")),
                    Case("DAX window", lambda: per_guest_mib("window"))],
                   runs, baseline="READ fallback (copies)")
    print_table(f"memory: private memory added plus page tables (VmPTE) per guest, {guests} "
                f"guests each holding a {size // MiB} MiB file (median guest)", rows, "MiB",
                "x READ", digits=2)


# -- reads ---------------------------------------------------------------------------------

def _native_bases(stack: ExitStack, path: Path, size: int) -> tuple[mmap.mmap, list[int]]:
    fd = os.open(path, os.O_RDONLY)
    stack.callback(os.close, fd)
    native = stack.enter_context(mmap.mmap(fd, size, prot=mmap.PROT_READ))
    base = safemem.buffer_address(native)
    return native, [base + start for start in range(0, size, RANGE)]


def bench_reads(root: Path, host: HostDaemon, size: int, random_reads: int, runs: int) -> None:
    for label, (offsets, chunk) in _patterns(size, random_reads).items():
        with ExitStack() as stack:
            _read_tables(stack, root, host, size, f"{label} reads of a {size // MiB} MiB file",
                         offsets, chunk, runs)


def _read_tables(stack: ExitStack, root: Path, host: HostDaemon, size: int, label: str,
                 offsets: list[int], chunk: int, runs: int) -> None:
    export = root / "export"
    volume = chunk * len(offsets)
    native, native_bases = _native_bases(stack, export / "big", size)
    dax = stack.enter_context(connect(host.socket_path, window_size=size))
    handle = _open(stack, dax, "big")
    mapping = stack.enter_context(dax.mmap(handle, 0, size))
    window_bases = [address(view) for view in mapping.unsafe_views()]
    _measure({NATIVE_C: _c_pass(stack, native_bases, offsets, chunk),
              "DAX window, raw memory, C loop": _c_pass(stack, window_bases, offsets, chunk)},
             volume, runs, NATIVE_C,
             f"read, memory speed: {label}, one C loop (window = the file's size, set up "
             f"before timing)")

    copied = _open(stack, stack.enter_context(connect(host.socket_path, window_size=0)), "big")
    virtiofsd = stack.enter_context(Virtiofsd(str(export), cache="none"))
    vcopied = _open(stack, stack.enter_context(connect(virtiofsd.socket_path, window_size=0)),
                    "big")
    cached = stack.enter_context(bindfs_mount(str(export), str(root / "fuse")))
    direct = stack.enter_context(bindfs_mount(str(export), str(root / "fuse-direct"),
                                              "direct_io"))
    native_base = native_bases[0]
    readers: dict[str, Reader] = {
        NATIVE_PREAD: _pread(stack, export / "big"),
        "native mmap, guarded C copy (safemem)":
            lambda b, p: safemem.read_into(native_base + p, b),
        "Handle.pread_into through the window": lambda b, p: handle.pread_into(b, p),
        "Mapping.read_into": lambda b, p: mapping.read_into(p, b),
        "pagefs-host READ (no window)": lambda b, p: copied.pread_into(b, p),
        "virtiofsd READ (cache=none)": lambda b, p: vcopied.pread_into(b, p),
        "FUSE mount (bindfs), pread": _pread(stack, Path(cached) / "big"),
        "FUSE mount (bindfs, direct_io), pread": _pread(stack, Path(direct) / "big"),
    }
    passes = {name: _python_pass(stack, read, offsets, chunk) for name, read in readers.items()}
    passes["native mmap slice (bytes)"] = _bytes_pass(lambda p, n: native[p : p + n], offsets,
                                                      chunk)
    passes["Mapping.read (bytes, README's API)"] = _bytes_pass(mapping.read, offsets, chunk)
    _measure(passes, volume, runs, NATIVE_PREAD,
             f"read, APIs: {label} (window = the file's size; each row the same Python loop "
             f"as native pread)",
             [("Mapping.read_into / guarded native copy", "Mapping.read_into",
               "native mmap, guarded C copy (safemem)"),
              ("Mapping.read / native mmap slice", "Mapping.read (bytes, README's API)",
               "native mmap slice (bytes)")])


def _larger_passes(stack: ExitStack, root: Path, host: HostDaemon, name: str, window: int,
                   offsets: list[int], chunk: int) -> dict[str, Pass]:
    """Native pread, the window's pread (window of `window` bytes) and the READ paths
    (virtiofsd serves one connection, as one VM: a fresh one each time)."""
    dax = stack.enter_context(connect(host.socket_path, window_size=window))
    copy_share = stack.enter_context(connect(host.socket_path, window_size=0))
    virtiofsd = stack.enter_context(Virtiofsd(str(root / "export"), cache="none"))
    vshare = stack.enter_context(connect(virtiofsd.socket_path, window_size=0))
    readers: dict[str, Reader] = {NATIVE_PREAD: _pread(stack, root / "export" / name)}
    for label, share in (("Handle.pread_into through the window", dax),
                         ("pagefs-host READ (no window)", copy_share),
                         ("virtiofsd READ (cache=none)", vshare)):
        handle = _open(stack, share, name)
        readers[label] = lambda b, p, h=handle: h.pread_into(b, p)
    return {label: _python_pass(stack, read, offsets, chunk) for label, read in readers.items()}


def bench_larger(root: Path, host: HostDaemon, size: int, random_reads: int, runs: int) -> None:
    for label, (offsets, chunk) in _patterns(size, random_reads).items():
        with ExitStack() as readers:
            passes = _larger_passes(readers, root, host, "big", size // 4, offsets, chunk)
            _measure(passes, chunk * len(offsets), runs, NATIVE_PREAD,
                     f"read, file larger than the window: {label} reads of a "
                     f"{size // MiB} MiB file, window = file/4 ({size // 4 // MiB} MiB)")


def bench_sweep(root: Path, host: HostDaemon, sizes: list[int], main_size: int,
                random_reads: int, runs: int) -> None:
    """The charts' series: throughput against file size (window = file/4) and against
    window size (the largest file); each point's runs recorded, its table printed."""
    fixed = max(sizes)
    points = [(size, size // 4) for size in sizes]
    points += [(fixed, fixed * num // den) for num, den in ((1, 8), (1, 2), (1, 1), (2, 1))]
    points = [(size, window) for size, window in points if window >= RANGE]  # a range at least
    for size, window in points:
        name = "big" if size == main_size else f"sweep-{size // MiB}"
        if not (root / "export" / name).exists():
            _make_file(root / "export" / name, size)
        for label, (offsets, chunk) in _patterns(size, random_reads).items():
            with ExitStack() as readers:
                passes = _larger_passes(readers, root, host, name, window, offsets, chunk)
                values = _measure(passes, chunk * len(offsets), runs, NATIVE_PREAD,
                                  f"sweep: {label} reads, {size // MiB} MiB file, window "
                                  f"{window // MiB} MiB")
            pattern = label.split()[0]
            for line, samples in values.items():
                if window == size // 4:
                    record_series(f"throughput-file-{pattern}", line, size / MiB, samples)
                if size == fixed:
                    record_series(f"throughput-window-{pattern}", line, window / size,
                                  samples)


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
    print_table(f"latency: store-to-load round trip on a shared word (two hops, one C loop; "
                f"median of {rounds} rounds)", compare(cases, runs, baseline=baseline), "us",
                "x memfd", digits=2)


def bench(args: argparse.Namespace) -> None:
    size = args.size_mib * MiB
    if {"read", "larger", "sweep"} & set(args.only):  # before minutes of other sections
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
            bench_reads(root, host, size, args.random_reads, args.runs)
        if "larger" in args.only:
            bench_larger(root, host, size, args.random_reads, args.runs)
        if "sweep" in args.only:
            bench_sweep(root, host, [s * MiB for s in args.sweep_sizes], size,
                        args.random_reads, args.sweep_runs)
        if "latency" in args.only:
            bench_store_to_load(stack, root, host, args.rounds, args.runs)


def _sections(text: str) -> list[str]:
    return text.split(",")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--guests", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5, help="runs of the read and latency cases")
    parser.add_argument("--memory-runs", type=int, default=3)
    parser.add_argument("--random-reads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2000, help="round trips per latency run")
    parser.add_argument("--sweep-runs", type=int, default=3)
    parser.add_argument("--sweep-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[16, 64, 256], help="file sizes of the sweep, MiB")
    parser.add_argument("--only", default=",".join(SECTIONS), type=_sections,
                        help="sections, comma-separated")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(SECTIONS)}")
    return run_command("bench-guest", args.runs, lambda: bench(args), args.out)


if __name__ == "__main__":
    sys.exit(main())
