"""SINGLE-COPY probe: one guest process reads a whole file and reports its memory.

    python -m pagefs.impl.guest.memprobe SOCKET PATH --via window|read

The process connects, notes its memory (/proc/self/smaps_rollup), then reads every
byte of PATH and keeps it accessible, as a guest's page cache would:
- `window`: maps the file through the DAX window and loads every page (into a small
  reused buffer, folding the bytes into a checksum); the pages stay mapped;
- `read`: reads the file with READ messages (no window) and keeps the bytes.
It prints a JSON line {"checksum", "before", "after"} on stdout; then, for each line
on stdin other than "exit", one more JSON line of its memory now. So a coordinator
measures several guests once they all hold the file (a page one process alone maps
counts as private to it). Memory figures are smaps_rollup fields in bytes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zlib
from typing import IO

from pagefs.impl.client.child import reaped
from pagefs.impl.guest.connect import connect

FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Anonymous")
CHUNK = 1 << 20


def smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """The process's memory totals, in bytes, for FIELDS."""
    totals: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in FIELDS:
                totals[name] = int(rest.split()[0]) * 1024
    return totals


def private(totals: dict[str, int]) -> int:
    """Bytes no other process shares: what a guest-private copy costs."""
    return totals["Private_Clean"] + totals["Private_Dirty"]


def memory_per_guest(socket_path: str, path: str, guests: int, via: str) -> list[int]:
    """Start `guests` probes at once on `path`; once every one holds the file, return
    the private bytes each added (in the order they were started)."""
    with reaped([
        subprocess.Popen(
            [sys.executable, "-m", "pagefs.impl.guest.memprobe", socket_path, path, "--via", via],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(guests)
    ]) as probes:
        pipes = [_pipes(p) for p in probes]
        reports = [json.loads(out.readline()) for _, out in pipes]
        # Measure again once every guest holds the file: shared pages are shared now.
        for to, _ in pipes:
            to.write("measure\n")
            to.flush()
        held = [json.loads(out.readline()) for _, out in pipes]
        for to, _ in pipes:
            to.write("exit\n")
            to.flush()
        for p in probes:
            if p.wait(timeout=120) != 0:
                raise RuntimeError(f"memprobe ({via}) failed")
    if len({r["checksum"] for r in reports}) != 1:
        raise RuntimeError("guests read different bytes")
    return [private(h) - private(r["before"]) for r, h in zip(reports, held, strict=True)]


def _pipes(probe: subprocess.Popen[str]) -> tuple[IO[str], IO[str]]:
    """A probe's stdin and stdout (both piped when it was started)."""
    assert probe.stdin is not None and probe.stdout is not None
    return probe.stdin, probe.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pagefs-memprobe")
    parser.add_argument("socket")
    parser.add_argument("path")
    parser.add_argument("--via", choices=("window", "read"), required=True)
    args = parser.parse_args(argv)
    with connect(args.socket, window_size=None if args.via == "window" else 0) as share:
        buffer = bytearray(CHUNK)
        before = smaps_rollup()
        handle = share.open(args.path)
        checksum = 0
        if args.via == "window":
            size = share.stat(handle).st_size
            held = share.mmap(handle, 0, size)
            for position in range(0, size, CHUNK):
                n = min(CHUNK, size - position)
                held.read_into(position, memoryview(buffer)[:n])
                checksum = zlib.crc32(memoryview(buffer)[:n], checksum)
        else:
            copy = share.read(handle)  # held, like the mapping, while memory is measured
            checksum = zlib.crc32(copy)
        after = smaps_rollup()
        print(json.dumps({"checksum": checksum, "before": before, "after": after}), flush=True)
        while sys.stdin.readline() not in ("exit\n", ""):
            print(json.dumps(smaps_rollup()), flush=True)
        if args.via == "window":
            held.close()
        handle.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
