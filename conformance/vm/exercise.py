"""The project's file exerciser (conformance/exerciser) run inside a guest on its share.

`make vm` puts the static binary in the initramfs as /bin/fsx; the arguments are the
exerciser's own (`exerciser.run.arguments`), so a guest run and a host run differ only
in where the file lives.
"""

from __future__ import annotations

import shlex

from pagefs.conformance.exerciser.run import Outcome, arguments
from pagefs.conformance.vm.machine import Machine

# seconds a run may take in the guest before it counts as hung (a few thousand ops take
# one to three minutes under TCG on a loaded machine)
EXERCISE_LIMIT = 900.0


def exercise(vm: Machine, path: str, *, ops: int, seed: int = 1, mmap: bool = True,
             fallocate: bool = True, max_size: int = 256 << 10,
             timeout: float = EXERCISE_LIMIT) -> Outcome:
    """Run /bin/fsx in the guest on `path` (a guest path); exit 0 means every op held.
    AgentTimeout when it has not ended within `timeout` seconds."""
    command = ["/bin/fsx", *arguments(path, ops=ops, seed=seed, max_size=max_size,
                                      mmap=mmap, fallocate=fallocate)]
    status, output = vm.agent.sh(shlex.join(command), timeout)
    return Outcome(status, output.strip(), command)
