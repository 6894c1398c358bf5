"""The two properties no sequence of requests can show, measured on the real daemon.

- SINGLE-COPY: guests reading one file through the DAX window add (almost) no private
  memory each, where guests reading it by READ each keep a copy. The measurement is
  the guest benchmark's (`memprobe.memory_per_guest`, as `make bench-guest` runs it):
  guest processes on one pagefs-host, measured once all of them hold the file.
- DURABLE: the host directory is an ext4 file system on a loop device this check
  makes. A guest writes (by WRITE, and by a store through a mapping), sends FSYNC,
  and the bytes are then looked for on the device itself, read with O_DIRECT below
  every cache. A control file written without FSYNC must not be there yet, else the
  check cannot tell FSYNC from background writeback and says inconclusive.

Each gives a `Verdict` like the runner's (family "measured"); a check that cannot run
here (no root, no loop device) is inconclusive with the reason, never a pass.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator

from pagefs.conformance.report import FAIL, INCONCLUSIVE, PASS, Verdict
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.guest.connect import connect
from pagefs.impl.guest.memprobe import memory_per_guest

MiB = 1 << 20
PAGE = 4096
FAMILY = "measured"
FILE_MIB = 32  # the file the guests read for SINGLE-COPY
GUESTS = 2
# A window guest may add page tables and bookkeeping, not a copy: under 1/8 of the file.
WINDOW_SHARE_MAX = 0.125
# The READ control must show the copies the measurement is there to see.
READ_SHARE_MIN = 0.75
DISK_MIB = 64


def single_copy(runs: int = 3, window_via: str = "window") -> Verdict:
    """Private memory each guest adds holding a FILE_MIB file, window vs READ (medians).
    `window_via="read"` is the seeded fault `copying-guest`: the "window" guests copy."""
    start = time.monotonic()
    size = FILE_MIB * MiB
    with tempfile.TemporaryDirectory(prefix="pagefs-single-copy.") as export:
        os.chmod(export, 0o755)
        with open(os.path.join(export, "big"), "wb") as f:
            for _ in range(FILE_MIB):
                f.write(os.urandom(MiB))
        with host_daemon(export) as host:
            def median(via: str) -> float:
                return statistics.median(
                    statistics.median(memory_per_guest(host.socket_path, "big", GUESTS, via))
                    for _ in range(runs))
            window, read = median(window_via), median("read")
    figures = (f"{GUESTS} guests each holding a {FILE_MIB} MiB file: {window / MiB:.2f} MiB "
               f"private per guest through the window, {read / MiB:.2f} MiB by READ "
               f"(medians of {runs} runs; memprobe, as make bench-guest)")
    if read < READ_SHARE_MIN * size:
        verdict = Verdict("SINGLE-COPY", FAMILY, INCONCLUSIVE,
                          f"the READ control kept no copy, so the probe sees nothing: {figures}")
    elif window > WINDOW_SHARE_MAX * size:
        verdict = Verdict("SINGLE-COPY", FAMILY, FAIL, f"window guests copy: {figures}")
    else:
        verdict = Verdict("SINGLE-COPY", FAMILY, PASS, figures)
    verdict.examples, verdict.judged = runs * 2, runs * 2 * GUESTS
    verdict.seconds = round(time.monotonic() - start, 2)
    return verdict


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def _loop_ext4(base: str) -> Iterator[tuple[str, str]]:
    """(device, mount point) of a fresh ext4 on a loop device; everything undone after."""
    image, mnt = os.path.join(base, "disk.img"), os.path.join(base, "mnt")
    os.mkdir(mnt)
    with open(image, "wb") as f:
        f.truncate(DISK_MIB * MiB)
    _run("mkfs.ext4", "-q", "-F", image)
    device = subprocess.run(["losetup", "-f", "--show", image], check=True, text=True,
                            capture_output=True, timeout=60).stdout.strip()
    try:
        # A long commit interval: nothing but FSYNC sends data to the device soon.
        _run("mount", "-o", "commit=600", device, mnt)
        try:
            yield device, mnt
        finally:
            _run("umount", mnt)
    finally:
        _run("losetup", "-d", device)


def _on_device(device: str, patterns: dict[str, bytes]) -> set[str]:
    """Which patterns the device holds, read with O_DIRECT (no cache in between)."""
    found: set[str] = set()
    fd = os.open(device, os.O_RDONLY | os.O_DIRECT)
    try:
        buffer = mmap.mmap(-1, MiB)  # page-aligned, as O_DIRECT needs
        offset = 0
        while n := os.preadv(fd, [buffer], offset):
            chunk = buffer[:n]
            found |= {name for name, p in patterns.items() if p in chunk}
            offset += n
        buffer.close()
    finally:
        os.close(fd)
    return found


def durable(fsync: bool = True) -> Verdict:
    """FSYNC after WRITE and after a store: the bytes are on the device. `fsync=False`
    is the seeded fault `no-fsync`: the guest never sends it."""
    start = time.monotonic()
    missing = [tool for tool in ("losetup", "mkfs.ext4", "mount") if not shutil.which(tool)]
    if os.geteuid() != 0 or missing or not os.path.exists("/dev/loop-control"):
        why = f"missing {', '.join(missing)}" if missing else "needs root and loop devices"
        return Verdict("DURABLE", FAMILY, INCONCLUSIVE, f"untested: {why}")
    written, stored, control = os.urandom(2 * PAGE), os.urandom(PAGE), os.urandom(PAGE)
    with tempfile.TemporaryDirectory(prefix="pagefs-durable.") as base:
        with _loop_ext4(base) as (device, mnt):
            export = os.path.join(mnt, "export")
            os.mkdir(export, 0o755)
            with host_daemon(export) as host, connect(host.socket_path) as share:
                # Looked for while every handle is still open: no close (whose FLUSH may
                # sync), no exit, no unmount has flushed anything yet.
                with share.open("synced", os.O_RDWR | os.O_CREAT) as f, \
                        share.open("unsynced", os.O_RDWR | os.O_CREAT) as g:
                    f.pwrite(written + bytes(PAGE), 0)  # extends the file: WRITE
                    with share.mmap(f, 0, 3 * PAGE, writable=True) as m:
                        m[2 * PAGE:3 * PAGE] = stored  # a store into the host's page
                    if fsync:
                        share.fsync(f)
                    g.pwrite(control, 0)
                    found = _on_device(device, {"written": written[:PAGE],
                                                "written+1": written[PAGE:],
                                                "stored": stored, "control": control})
    seconds = round(time.monotonic() - start, 2)
    lost = sorted({"written", "written+1", "stored"} - found)
    how = "guest WRITE and a store through a writable mapping, then FSYNC, on ext4 on a " \
          "loop device read back with O_DIRECT"
    if lost:
        verdict = Verdict("DURABLE", FAMILY, FAIL, f"not on the device after FSYNC: "
                          f"{', '.join(lost)} ({how})")
    elif "control" in found:
        verdict = Verdict("DURABLE", FAMILY, INCONCLUSIVE, "the control, never synced, "
                          f"reached the device too: cannot tell FSYNC's effect ({how})")
    else:
        verdict = Verdict("DURABLE", FAMILY, PASS, f"every synced byte on the device, the "
                          f"unsynced control not yet ({how})")
    verdict.examples, verdict.judged, verdict.seconds = 1, 3, seconds
    return verdict


def measured_fault(fault: str) -> Verdict:
    """The measurement with one seeded fault (faults.MEASURED_FAULTS)."""
    if fault == "copying-guest":
        return single_copy(runs=1, window_via="read")
    if fault == "no-fsync":
        return durable(fsync=False)
    raise ValueError(f"unknown measured fault {fault!r}")
