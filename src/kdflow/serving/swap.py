"""Hot swap: a background thread follows the source (an MLflow alias) and, when it points at
another version, loads that version beside the current one and swaps a single reference.

Requests read `current` once per forward pass, so a swap never blocks or fails a request: passes
already running finish on the old version, the next pass uses the new one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kdflow.serving.source import Loader, Served

log = logging.getLogger("kdflow.serving")


class Swapper:
    def __init__(self, loader: Loader, poll_s: float, on_swap: Callable[[Served], None],
                 on_load: Callable[[str], None] = lambda result: None):
        self.loader = loader
        self.poll_s = poll_s
        self.current: Served | None = None
        self._on_swap = on_swap
        self._on_load = on_load
        self._failed: dict[str, float] = {}  # version -> monotonic time of its last failed load
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kdflow-swapper", daemon=True)

    def load_now(self) -> Served:
        """Synchronous first load (directory sources: a bad path should fail the command, not a probe)."""
        served = self.loader.load(self.loader.resolve())
        self._install(served)
        return served

    def start(self) -> None:
        if self.loader.source.watched or self.current is None:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.check()
            if self.current is not None and not self.loader.source.watched:
                return  # pinned source: loaded once, nothing to follow
            self._stop.wait(self.poll_s)

    def check(self) -> bool:
        """One poll: resolve the source and swap if it moved. True when a new version was installed."""
        try:
            version = self.loader.resolve()
        except Exception as exc:  # registry down or alias unset: keep serving what we have
            log.warning("cannot resolve %s (keeping version %s): %s", self._name(), self._version(), exc)
            return False
        current = self.current
        if current is not None and current.version == version:
            return False
        failed_at = self._failed.get(version)
        if current is not None and failed_at is not None and time.monotonic() - failed_at < max(10.0, self.poll_s):
            return False  # do not re-download a version that just failed, every poll
        log.info("loading %s version %s (serving %s)", self._name(), version, self._version())
        started = time.monotonic()
        try:
            served = self.loader.load(version)
        except Exception as exc:
            self._failed[version] = time.monotonic()
            self._on_load("error")
            log.error("failed to load %s version %s, still serving %s: %s",
                      self._name(), version, self._version(), exc)
            return False
        self._install(served)
        log.info("now serving %s version %s (loaded in %.2fs)", self._name(), version, time.monotonic() - started)
        return True

    def _install(self, served: Served) -> None:
        self._on_swap(served)      # metrics for the new version exist before it serves
        self.current = served      # the swap: one reference assignment
        self._failed.pop(served.version, None)
        self._on_load("ok")

    def _name(self) -> str:
        return self.loader.source.location

    def _version(self) -> str:
        return self.current.version if self.current is not None else "nothing"
