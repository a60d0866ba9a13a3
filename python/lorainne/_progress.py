"""A minimal progress bar on stderr for the CLI (no dependency)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "label") as bar: ... bar.advance("step")``; silent when disabled."""

    def __init__(self, total: int, label: str, *, enabled: bool = True, stream=None):
        self.total, self.label, self.enabled = max(total, 1), label, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()

    def __enter__(self):
        self._draw("")
        return self

    def advance(self, what: str = "") -> None:
        self.done = min(self.done + 1, self.total)
        self._draw(what)

    def _draw(self, what: str) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * self.done / self.total)
        elapsed = time.perf_counter() - self.start
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total} {elapsed:6.1f}s {what[:40]:<40}"
        )
        self.stream.flush()

    def __exit__(self, *exc):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
        return False
