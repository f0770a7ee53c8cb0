"""Hot swap: a background thread follows the source (an MLflow alias) and, when it points at
another version, loads that version beside the current one and swaps a single reference.

Requests read `current` once per forward pass, so a swap never blocks or fails a request: passes
already running finish on the old version, the next pass uses the new one.

A version whose contract differs from the one served (input shape/dtype, classes) is refused: the
old version keeps serving and the refusal is counted and exported (the alert makes the controller
move the alias back). A version that fails to load is exported the same way while the source points
at it (`kdflow_model_load_failed{cause}`: `model` when its own files are refused or broken, retried
every 10 s at most; `registry` when the registry could not be read, retried at the next poll). A served
version that the registry no longer has makes the server unready.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kdflow.redact import redact
from kdflow.serving import heap
from kdflow.serving.source import Loader, Served, VersionGone, contract_change
from kdflow.tracking import RegistryUnavailable

log = logging.getLogger("kdflow.serving")


def _nothing(*args) -> None:
    pass


class Swapper:
    def __init__(self, loader: Loader, poll_s: float, on_swap: Callable[[Served], None],
                 on_load: Callable[[str], None] = _nothing,
                 on_refuse: Callable[[str | None, str, bool], None] = _nothing,
                 on_fail: Callable[[str | None, str], None] = _nothing):
        self.loader = loader
        self.poll_s = poll_s
        self.current: Served | None = None
        self.gone: str | None = None   # why the served version is no longer in the registry (unready)
        self._on_swap = on_swap
        self._on_load = on_load
        self._on_refuse = on_refuse    # (refused version the source points at, or None; what; newly refused)
        self._on_fail = on_fail        # (version the source points at that failed to load, or None; cause)
        self._failed: dict[str, tuple[float, str]] = {}  # version -> (monotonic time of its last failed load, cause)
        self.refused: dict[str, str] = {}    # version -> what of its contract differs
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
        except VersionGone as exc:  # the registry answered: nothing to serve any more; keep answering, unready
            if self.gone is None:
                log.error("%s (serving %s): readiness is now false", exc, self._version())
            self.gone = str(exc)
            return False
        except Exception as exc:  # registry unreachable: keep serving what we have, still ready
            log.warning("cannot resolve %s (keeping version %s): %s", self._name(), self._version(), redact(str(exc)))
            return False
        self.gone = None
        current = self.current
        self._on_refuse(version if version in self.refused else None, self.refused.get(version, ""), False)
        failed = self._failed.get(version) if current is None or current.version != version else None
        self._on_fail(version if failed else None, failed[1] if failed else "")
        if current is not None and (current.version == version or version in self.refused):
            return False
        if current is not None and failed is not None and failed[1] == "model" \
                and time.monotonic() - failed[0] < max(10.0, self.poll_s):
            return False  # do not re-download a version whose files are bad, every poll
        log.info("loading %s version %s (serving %s)", self._name(), version, self._version())
        started = time.monotonic()
        try:
            served = self.loader.load(version)
        except Exception as exc:
            cause = "registry" if isinstance(exc, RegistryUnavailable) else "model"
            self._failed[version] = (time.monotonic(), cause)
            self._on_load("error")
            self._on_fail(version, cause)
            log.error("failed to load %s version %s, still serving %s: %s",
                      self._name(), version, self._version(), redact(str(exc)))
            return False
        problem = contract_change(current, served) if current is not None else None
        if problem is not None:
            self.refused[version] = problem[0]
            self._on_refuse(version, problem[0], True)
            log.error("REFUSED to swap %s version %s in (still serving %s): its contract differs: %s",
                      self._name(), version, self._version(), problem[1])
            return False
        self._install(served)
        log.info("now serving %s version %s (loaded in %.2fs)", self._name(), version, time.monotonic() - started)
        return True

    def _install(self, served: Served) -> None:
        self._on_swap(served)      # metrics for the new version exist before it serves
        self.current = served      # the swap: one reference assignment
        self._failed.pop(served.version, None)
        self._on_fail(None, "")
        self._on_load("ok")
        heap.settle()

    def _name(self) -> str:
        return self.loader.source.location

    def _version(self) -> str:
        return self.current.version if self.current is not None else "nothing"
