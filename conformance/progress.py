"""Progress on stderr: a live bar on a terminal, one line per finished property always."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO = sys.stderr) -> None:
        self.total, self.label, self.stream = total, label, stream
        self.done = 0
        self.current = ""
        self.examples = 0
        self.tty = stream.isatty()
        self._last = 0.0

    def start(self, item: str) -> None:
        self.current, self.examples = item, 0
        self._draw(force=True)

    def example(self) -> None:
        self.examples += 1
        self._draw()

    def finish(self, item: str, result: str) -> None:
        self.done += 1
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"{self.label}: [{self.done}/{self.total}] {item}: {result} "
                          f"({self.examples} examples)\n")
        self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.tty or (not force and now - self._last < 0.1):
            return
        self._last = now
        width = 30
        filled = width * self.done // max(1, self.total)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r\033[K{self.label} [{bar}] {self.done}/{self.total} "
                          f"{self.current} example {self.examples}")
        self.stream.flush()
