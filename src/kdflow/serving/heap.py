"""Garbage-collector settings of a serving process: the cause of its latency tail.

A loaded server holds ~200 k tracked objects (torch, numpy, starlette, the models); one full
collection walks all of them, ~60 ms on this 2-core machine, and every request allocates the lists
its JSON body parses into, so full collections came every few seconds under load: p99 at concurrency
32 was 60-150 ms while p50 was 8-10 ms. After a version is installed, `settle` collects once and
freezes what is alive (`gc.freeze`: later collections skip it), and a larger young generation makes
collections rarer. A swap pays one full collection (in the swapper thread, once per new version);
the previous version's reference cycles are collected by the next swap's `settle`.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 20, 100)  # young generation: ~300 single-item requests' parsed bodies between passes
_enabled = False


def configure() -> None:
    """For a serving process (`kdflow serve`), not for code that merely imports the app (tests)."""
    global _enabled
    _enabled = True
    gc.set_threshold(*THRESHOLDS)


def settle() -> None:
    """After a model version is installed: collect once, freeze the survivors."""
    if _enabled:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
