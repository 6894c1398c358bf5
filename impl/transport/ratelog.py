"""Rate-limited logging of what a peer causes: one line per kind per interval, with a count.

A guest or a VMM can make the daemon refuse, truncate or drop as often as it likes; each
such event logged as it comes would let it fill the host's disk (10 MB per 10^5 bad
requests) and bury what matters. `RateLog.note(kind, ...)` logs the first event of a
kind at once, counts the rest, and when the interval is over logs the next with how many
were held back. Kinds are short fixed strings ("reply truncated", "malformed request"),
never anything the peer chose, so the table stays small. Used by the back-end here and
by the host daemon above it.
"""

from __future__ import annotations

import logging
import threading
import time

INTERVAL_SECONDS = 10.0


class RateLog:
    """One logger's rate limiter; thread-safe."""

    def __init__(self, logger: logging.Logger, interval: float = INTERVAL_SECONDS) -> None:
        self._log = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (window start, held back)

    def note(self, level: int, kind: str, message: str, *args: object,
             exc_info: bool = False) -> None:
        """Log `message % args` under `kind` unless one was logged within the interval."""
        if not self._log.isEnabledFor(level):
            return
        now = time.monotonic()
        with self._lock:
            since, held = self._kinds.get(kind, (-self._interval, 0))
            if now - since < self._interval:
                self._kinds[kind] = (since, held + 1)
                return
            self._kinds[kind] = (now, 0)
        if held:
            message += f" [{kind}: {held} more in the last {now - since:.0f} s not logged]"
        self._log.log(level, message, *args, exc_info=exc_info)

    def flush(self) -> None:
        """Log the counts still held back (at shutdown)."""
        with self._lock:
            held = {kind: n for kind, (_, n) in self._kinds.items() if n}
            self._kinds.clear()
        for kind, n in sorted(held.items()):
            self._log.warning("%s: %d more not logged", kind, n)
