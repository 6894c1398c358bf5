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

from pagefs.conformance.target import MAPPINGS, PEERS, READ_ONLY, SPECIAL, Target, TargetFactory
from pagefs.conformance.targets.mount import SYSCALL_VIEW_LIMITS, ViewTarget


def _run(*args: str) -> bool:
    return subprocess.run(args, capture_output=True, timeout=30).returncode == 0


class LocalFactory(TargetFactory):
    name = "local"

    def __init__(self) -> None:
        self._base = tempfile.mkdtemp(prefix="pagefs-conformance-local.")
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
