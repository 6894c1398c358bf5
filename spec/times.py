"""How an observed modification time is compared with the spec's logical one.

The spec's `Mtime` is a per-inode version (and, after SETATTR set it, an exact time).
A harness that sees real timestamps keeps a `TimeMap` per run and asks whether each new
observation is consistent with everything seen so far: an exact time must be shown
exactly; one version of an inode always shows one real time; and a later version never
shows an earlier time than an earlier version did (clocks are coarse, so it may show
the same). A guest that reports a stale mtime after the host changed the file shows,
for the new version, a time other than the host's (the second rule) or one earlier than
already seen (the third): that is what COH-META asks a harness to catch.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagefs.spec.datatypes import FrozenMap, Mtime


@dataclass(frozen=True)
class TimeMap:
    """Real times seen so far, by (ino, version) of a clock-given (not explicit) mtime."""

    seen: FrozenMap[tuple[int, int], int] = FrozenMap()

    def observe(self, ino: int, mtime: Mtime, real_ns: int) -> TimeMap | None:
        """The map extended with this observation, or None when it is inconsistent.

        post: __return__ is None or mtime.ns is not None or (ino, mtime.version) in __return__.seen
        """
        if mtime.ns is not None:
            return self if real_ns == mtime.ns else None
        key = (ino, mtime.version)
        if key in self.seen:
            return self if self.seen[key] == real_ns else None
        for (other_ino, version), seen_ns in self.seen.items():
            if other_ino != ino:
                continue
            if version < mtime.version and seen_ns > real_ns:
                return None
            if version > mtime.version and seen_ns < real_ns:
                return None
        return TimeMap(self.seen.set(key, real_ns))
