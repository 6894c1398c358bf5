"""The project's file exerciser (conformance/exerciser) run inside a guest on its share.

`make vm` puts the static binary in the initramfs as /bin/fsx; the arguments are the
exerciser's own (`exerciser.run.arguments`), so a guest run and a host run differ only
in where the file lives.
"""

from __future__ import annotations

import shlex

from pagefs.conformance.exerciser.run import Outcome, arguments
from pagefs.conformance.vm.machine import Machine

# seconds a run may take in the guest before it counts as hung (under TCG on a loaded
# machine 2000 ops took 2-5 s, so 30,000 take a minute or two)
EXERCISE_LIMIT = 900.0


def exercise(vm: Machine, path: str, *, ops: int, seed: int = 1, mmap: bool = True,
             fallocate: bool = True, max_size: int = 256 << 10, max_op_len: int = 64 << 10,
             align: int = 0,
             timeout: float = EXERCISE_LIMIT) -> Outcome:
    """Run /bin/fsx in the guest on `path` (a guest path); exit 0 means every op held.
    AgentTimeout when it has not ended within `timeout` seconds."""
    command = ["/bin/fsx", *arguments(path, ops=ops, seed=seed, max_size=max_size,
                                      max_op_len=max_op_len,
                                      mmap=mmap, fallocate=fallocate, align=align)]
    status, output = vm.agent.sh(shlex.join(command), timeout)
    return Outcome(status, output.strip(), command)
