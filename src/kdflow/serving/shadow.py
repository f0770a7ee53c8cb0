"""Shadow teacher: a sampled fraction of requests is run through the student's teacher off the
request path, and the server counts whether the two agree. The queue is bounded; when the teacher
cannot keep up, samples are dropped and counted instead of slowing requests down."""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable

import numpy as np
import torch

from kdflow.serving.source import Served

log = logging.getLogger("kdflow.serving")
MAX_ROWS = 256  # rows per teacher forward pass when the queue has backed up


class ShadowRunner:
    def __init__(self, rate: float, capacity: int, record: Callable[[Served], object], seed: int | None = None):
        """`record(served)` returns the served version's metrics (with `shadow` and `shadow_dropped`)."""
        self.rate = rate
        self._record = record
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kdflow-shadow", daemon=True)

    def start(self) -> None:
        if self.rate > 0:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def offer(self, served: Served, x: np.ndarray, predicted: np.ndarray) -> None:
        """Maybe sample this request (called on the event loop: never blocks)."""
        if served.teacher is None or self.rate <= 0 or (self.rate < 1 and self._rng.random() >= self.rate):
            return
        try:
            self._queue.put_nowait((served, x, predicted))
        except queue.Full:
            self._record(served).shadow_dropped()

    def pending(self) -> int:
        return self._queue.qsize()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                items = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            rows = len(items[0][1])
            while rows < MAX_ROWS:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
                rows += len(item[1])
            try:
                self._compare(items)
            except Exception:  # a broken teacher must not kill the thread (it would stop counting)
                log.exception("shadow teacher forward failed")

    def _compare(self, items: list) -> None:
        by_version: dict[int, list] = {}
        for item in items:
            by_version.setdefault(id(item[0]), []).append(item)
        for group in by_version.values():
            served = group[0][0]
            x = np.concatenate([g[1] for g in group])
            student = np.concatenate([g[2] for g in group])
            with torch.inference_mode():
                teacher = served.teacher(torch.from_numpy(x)).argmax(1).numpy()
            agree = int((teacher == student).sum())
            self._record(served).shadow(agree, len(student) - agree)
