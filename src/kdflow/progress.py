"""Progress of long work as plain lines, at most one every few seconds, when stdout is not a terminal.

A Kubeflow pod log or `dvc repro > log 2>&1` otherwise shows nothing for minutes. The lines go to
stderr: stdout carries the stage's JSON summary. On a terminal these stay quiet (training draws a
rich bar). A line: `kdflow prepare: 12,288/200,000 samples 6%  2,950 samples/s  ETA 1m04s`.
`KDFLOW_PROGRESS=lines|off` forces lines or silence; `KDFLOW_PROGRESS_SECONDS` sets the interval (5).
"""

from __future__ import annotations

import os
import sys
import time


def interval() -> float:
    return float(os.environ.get("KDFLOW_PROGRESS_SECONDS", "5"))


def plain_lines() -> bool:
    """Plain progress lines unless stdout is a terminal (KDFLOW_PROGRESS=lines|off overrides)."""
    forced = os.environ.get("KDFLOW_PROGRESS", "")
    if forced in ("lines", "off"):
        return forced == "lines"
    return not sys.stdout.isatty()


def duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Ticker:
    """Counts work done; prints a line when `interval` seconds have passed since the last one."""

    def __init__(self, stage: str, total: int | None = None, unit: str = "samples", every: float | None = None,
                 enabled: bool | None = None, stream=None):
        self.stage, self.total, self.unit = stage, total, unit
        self.interval = interval() if every is None else every
        self.enabled = plain_lines() if enabled is None else enabled
        self.stream = stream
        self.done, self.t0 = 0, time.monotonic()
        self.last = self.t0

    def update(self, n: int, extra: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            self.emit(extra)

    def line(self, extra: str = "") -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = self.done / elapsed
        parts = []
        if self.total:
            parts.append(f"{self.done:,}/{self.total:,} {self.unit} {100 * self.done / self.total:.0f}%")
            parts.append(f"{rate:,.0f} {self.unit}/s")
            parts.append(f"ETA {duration((self.total - self.done) / rate) if rate > 0 else '?'}")
        else:
            parts += [f"{self.done:,} {self.unit}", f"{rate:,.0f} {self.unit}/s"]
        if extra:
            parts.append(extra)
        return f"kdflow {self.stage}: " + "  ".join(parts)

    def emit(self, extra: str = "") -> None:
        print(self.line(extra), file=self.stream or sys.stderr, flush=True)

    def finish(self, extra: str = "") -> None:
        if self.enabled:
            self.emit(("done " + extra).strip())
