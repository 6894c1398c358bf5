"""Run the exerciser on one file and say whether the file held to its model."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from pagefs.conformance.exerciser.build import binary


@dataclass(frozen=True)
class Outcome:
    """One exerciser run: exit status 0 held, 1 departed, 2 could not start."""

    status: int
    output: str      # the summary line on success; the departure and the op log otherwise
    command: list[str]

    @property
    def held(self) -> bool:
        return self.status == 0


def run(path: str, *, ops: int = 10_000, seed: int = 1, max_size: int = 256 << 10,
        max_op_len: int = 64 << 10, mmap: bool = True, fallocate: bool = True,
        timeout: float | None = None) -> Outcome:
    """Exercise PATH (created or emptied first) with `ops` random ops from `seed`."""
    command = [binary(), *arguments(path, ops=ops, seed=seed, max_size=max_size,
                                    max_op_len=max_op_len, mmap=mmap, fallocate=fallocate)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return Outcome(done.returncode, (done.stdout + done.stderr).strip(), command)


def arguments(path: str, *, ops: int = 10_000, seed: int = 1, max_size: int = 256 << 10,
              max_op_len: int = 64 << 10, mmap: bool = True,
              fallocate: bool = True, align: int = 0) -> list[str]:
    """The exerciser's arguments for one run (a guest runs its own copy with these);
    `align` keeps every size the file takes a multiple of it (0: any size)."""
    args = ["-q", "-N", str(ops), "-S", str(seed), "-l", str(max_size), "-o", str(max_op_len)]
    if align:
        args += ["-A", str(align)]
    if not mmap:
        args.append("-M")
    if not fallocate:
        args.append("-F")
    return [*args, path]
