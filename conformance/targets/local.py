"""`local`: host and guest are the same kernel view of one directory -- the coherent ideal.

Guest requests are syscalls on the host directory itself and mappings are mmaps of
it, so every coherence property holds by construction of the kernel's page cache.
Departures found here are departures of the spec or of the harness, which is what
makes this target the suite's calibration point.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile

from pagefs.conformance.target import MAPPINGS, PEERS, READ_ONLY, Target, TargetFactory
from pagefs.conformance.targets.mount import ViewTarget


class LocalFactory(TargetFactory):
    name = "local"
    capabilities = frozenset({MAPPINGS, PEERS})

    def __init__(self) -> None:
        self._base = tempfile.mkdtemp(prefix="pagefs-conformance-local.")
        self._cases = itertools.count()

    def why_not(self, capability: str) -> str:
        if capability == READ_ONLY:
            return "one kernel view: the guest writes wherever the host may"
        return f"host and guest are one kernel view: no {capability} boundary to test"

    def start(self, *, read_only: bool = False) -> Target:
        root = os.path.join(self._base, str(next(self._cases)))
        os.mkdir(root, 0o755)  # the spec's export root
        return ViewTarget(self.name, self.capabilities, root, [root, root], read_only=False)

    def close(self) -> None:
        shutil.rmtree(self._base, ignore_errors=True)
