"""The project's file exerciser: a C program checking a file against a model of it.

`fsx.c` runs random reads, writes, truncates, mmap reads and writes and fallocate on one
file and stops at the first byte or size that departs from its model, printing the ops
that led there. It is built static, so the same binary runs on the host and inside a
busybox guest. `build` compiles it into a cache outside the repository; `run` runs it.
"""

from pagefs.conformance.exerciser.build import SOURCE, binary
from pagefs.conformance.exerciser.run import Outcome, run

__all__ = ["SOURCE", "Outcome", "binary", "run"]
