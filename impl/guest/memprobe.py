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
    probes = [
        subprocess.Popen(
            [sys.executable, "-m", "pagefs.impl.guest.memprobe", socket_path, path, "--via", via],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(guests)
    ]
    try:
        reports = [json.loads(p.stdout.readline()) for p in probes]
        # Measure again once every guest holds the file: shared pages are shared now.
        for p in probes:
            p.stdin.write("measure\n")
            p.stdin.flush()
        held = [json.loads(p.stdout.readline()) for p in probes]
        for p in probes:
            p.stdin.write("exit\n")
            p.stdin.flush()
        for p in probes:
            if p.wait(timeout=120) != 0:
                raise RuntimeError(f"memprobe ({via}) failed")
    finally:
        for p in probes:
            if p.poll() is None:
                p.kill()
                p.wait()
    if len({r["checksum"] for r in reports}) != 1:
        raise RuntimeError("guests read different bytes")
    return [private(h) - private(r["before"]) for r, h in zip(reports, held, strict=True)]


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
            held = share.read(handle)
            checksum = zlib.crc32(held)
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
