"""`local`: host and guest are the same kernel view of one directory -- the coherent ideal.

Guest requests are syscalls on the host directory itself and mappings are mmaps of
it, so every coherence property holds by construction of the kernel's page cache.
Departures found here are departures of the spec or of the harness, which is what
makes this target the suite's calibration point. The read-only export is a read-only
bind mount of the same directory (when the suite may mount, as root).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time

from pagefs.conformance.target import MAPPINGS, PEERS, READ_ONLY, SPECIAL, Target, TargetFactory
from pagefs.conformance.targets.mount import SYSCALL_VIEW_LIMITS, ViewTarget

PREFIX = "pagefs-conformance-local."
OWNER = "owner"  # "<pid> <start time>" of the process whose factory made the directory
UNOWNED_GRACE_S = 60.0  # a directory with no owner file yet may be a factory starting now


def _run(*args: str) -> bool:
    return subprocess.run(args, capture_output=True, timeout=30).returncode == 0


def _process_identity(pid: int) -> str | None:
    """pid and start time, which together name one process even after its pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return f"{pid} {fields[19]}"  # field 22 of stat(5), counted after the comm field


def _abandoned(base: str) -> bool:
    try:
        with open(os.path.join(base, OWNER)) as owner:
            recorded = owner.read().strip()
    except FileNotFoundError:
        try:
            return time.time() - os.stat(base).st_mtime > UNOWNED_GRACE_S
        except FileNotFoundError:
            return False
    except OSError:
        return False
    pid = recorded.split(" ", 1)[0]
    return not pid.isdigit() or _process_identity(int(pid)) != recorded


def sweep_abandoned(tmp: str | None = None) -> list[str]:
    """Unmounts and removes the directories of factories whose process was killed.

    close() undoes a factory's bind mount, and the suite unwinds on SIGTERM and Ctrl-C;
    but a SIGKILL runs nothing, and would leave the read-only bind mount in place for
    good. Every new factory therefore clears what dead ones left behind."""
    tmp = tmp or tempfile.gettempdir()
    swept = []
    for name in sorted(os.listdir(tmp)):
        base = os.path.join(tmp, name)
        if name.startswith(PREFIX) and os.path.isdir(base) and _abandoned(base):
            ro = os.path.join(base, "ro")
            while _is_mount_point(ro) and _run("umount", "-l", ro):
                pass  # a bind mount can be stacked by a factory killed mid-remount
            if not _is_mount_point(ro):
                shutil.rmtree(base, ignore_errors=True)
                swept.append(base)
    return swept


def _is_mount_point(path: str) -> bool:
    """From mountinfo, since os.path.ismount misses a bind mount of the same filesystem."""
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == path for line in mountinfo)


class LocalFactory(TargetFactory):
    name = "local"

    def __init__(self) -> None:
        sweep_abandoned()
        self._base = tempfile.mkdtemp(prefix=PREFIX)
        with open(os.path.join(self._base, OWNER), "w") as owner:
            owner.write(_process_identity(os.getpid()) or "")
        self._rw = os.path.join(self._base, "rw")
        self._ro = os.path.join(self._base, "ro")
        os.mkdir(self._rw)
        os.mkdir(self._ro)
        self._cases = itertools.count()
        self._mounted = False
        try:
            self._mounted = _run("mount", "--bind", self._rw, self._ro)
            if self._mounted and not _run("mount", "-o", "remount,bind,ro", self._ro):
                raise OSError(f"local: cannot make {self._ro} a read-only bind mount")
        except BaseException:  # a signal while mounting, too: leave nothing mounted
            self._mounted = True  # perhaps half-way (and ismount misses bind mounts)
            self.close()
            raise
        caps = {MAPPINGS, PEERS, SPECIAL} | ({READ_ONLY} if self._mounted else set())
        self.capabilities = frozenset(caps)

    def why_not(self, capability: str) -> str:
        if capability == READ_ONLY:
            return "a read-only bind mount needs root"
        return SYSCALL_VIEW_LIMITS.get(capability, capability)

    def start(self, *, read_only: bool = False) -> Target:
        case = str(next(self._cases))
        root = os.path.join(self._rw, case)
        os.mkdir(root, 0o755)  # the spec's export root
        view = os.path.join(self._ro, case) if read_only else root
        return ViewTarget(self.name, self.capabilities, root, [view, view], read_only)

    def close(self) -> None:
        if self._mounted:
            _run("umount", "-l", self._ro)
            self._mounted = False
        shutil.rmtree(self._base, ignore_errors=True)
