"""A small progress reporter on stderr (no dependency): stage, chunks done, rate, ETA."""

from __future__ import annotations

import sys
import time


class Progress:
    """Reports chunk progress of one stage.

    Parameters
    ----------
    enabled : bool
        Print anything at all.
    stream : file
        Where to print (stderr by default).
    """

    def __init__(self, enabled: bool = False, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def message(self, text: str) -> None:
        if self.enabled:
            print(f"fastridge: {text}", file=self.stream, flush=True)

    def start(self, stage: str, total: int, unit: str = "targets") -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        finished = self.done >= self.total
        # Redraw at most twice a second on a terminal, every 10 s otherwise.
        if not finished and now - self._last < (0.5 if self._tty else 10.0):
            return
        self._last = now
        elapsed = now - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / max(self.total, 1)
        line = (
            f"fastridge: {self.stage} {self.done}/{self.total} {self.unit} ({pct:5.1f}%)"
            f" {rate:,.0f} {self.unit}/s, elapsed {elapsed:.1f}s, ETA {eta:.1f}s"
        )
        end = "\r" if self._tty and not finished else "\n"
        print(line, end=end, file=self.stream, flush=True)
