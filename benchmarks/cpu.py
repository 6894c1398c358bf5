"""CPU time of a process and everything under it, in nanoseconds, from the scheduler.

/proc/PID/task/TID/schedstat's first field is the task's run time in ns (the 10 ms
ticks of /proc/PID/stat are too coarse for a few seconds of idling). A daemon's figure
sums every thread of it and of its descendants alive at the time (a worker process
per guest counts), so per-request CPU compares whole daemons, however they are built.
"""

from __future__ import annotations

import os


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
    except FileNotFoundError:
        pass  # exited meanwhile
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += _children(current)
    return tree


def tree_cpu_ns(pid: int) -> int:
    """Run time of every thread of `pid` and of its descendants, in ns."""
    total = 0
    for member in process_tree(pid):
        try:
            tids = os.listdir(f"/proc/{member}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{member}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                pass
    return total
