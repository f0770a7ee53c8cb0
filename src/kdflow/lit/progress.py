"""Training progress: a rich bar when stdout is a terminal, else plain lines on stderr (at most one every few
seconds).

A line: `kdflow train_teacher: epoch 3/10 step 120/469  1,234 samples/s  ETA 4m10s  val_acc=0.9120
val_loss=0.3010` — stage, epoch/step, samples/s, ETA of the whole fit, latest val metrics.
"""

from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks.progress import ProgressBar

from kdflow.progress import duration, interval, plain_lines


class LogLines(ProgressBar):
    def __init__(self, stage: str, every: float | None = None, stream=None):
        super().__init__()
        self.stage, self.stream = stage, stream
        self.interval = interval() if every is None else every
        self._on = True
        self.samples = self.steps = 0
        self.t0 = self.last = 0.0

    def disable(self) -> None:
        self._on = False

    def enable(self) -> None:
        self._on = True

    def on_train_start(self, trainer, pl_module) -> None:
        self.t0 = self.last = time.monotonic()
        self.samples = self.steps = 0

    def _val(self, trainer) -> str:
        m = trainer.callback_metrics
        return "  ".join(f"{k}={float(m[k]):.4f}" for k in ("val_acc", "val_loss") if k in m)

    def line(self, trainer, batch_idx: int | None) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        per_epoch = self.total_train_batches if isinstance(self.total_train_batches, int) else None
        max_epochs = trainer.max_epochs
        epoch = min(trainer.current_epoch, max_epochs - 1)  # past the last epoch once training ends
        parts = [f"kdflow {self.stage}: epoch {epoch + 1}/{max_epochs}"]
        if batch_idx is not None:
            parts[0] += f" step {batch_idx + 1}/{per_epoch or '?'}"
        parts.append(f"{self.samples / elapsed:,.0f} samples/s")
        if per_epoch and self.steps:
            done_in_epoch = batch_idx + 1 if batch_idx is not None else per_epoch
            left = (max_epochs - epoch - 1) * per_epoch + per_epoch - done_in_epoch
            parts.append(f"ETA {duration(left * elapsed / self.steps)}")
        val = self._val(trainer)
        if val:
            parts.append(val)
        return "  ".join(parts)

    def _emit(self, text: str) -> None:
        if self._on and self.trainer.is_global_zero:
            print(text, file=self.stream or sys.stderr, flush=True)  # stdout carries the JSON summary

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        self.samples += len(batch[1]) if isinstance(batch, list | tuple) else 0
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._emit(self.line(trainer, batch_idx))

    def on_validation_end(self, trainer, pl_module) -> None:
        now = time.monotonic()
        if not trainer.sanity_checking and now - self.last >= self.interval:
            self.last = now
            self._emit(self.line(trainer, None) + "  (validated)")

    def on_train_end(self, trainer, pl_module) -> None:
        self._emit(self.line(trainer, None) + "  done")


def _throttled_rich(every: float):
    from lightning.pytorch.callbacks import RichProgressBar

    class ThrottledRich(RichProgressBar):
        """Lightning's rich bar redraws and recomputes the metrics on every batch: +11 % CPU per epoch of the
        800-800 MLP at batch 128 (benchmarks/training_speed.py). This one redraws at most every `every` s."""

        def __init__(self):
            super().__init__()
            self._last = 0.0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            now = time.monotonic()
            if now - self._last >= every or batch_idx + 1 == self.total_train_batches:
                self._last = now
                super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    return ThrottledRich()


def progress_callbacks(stage: str, enabled: bool) -> list:
    """The progress callback for a fit: none when disabled, plain lines off a terminal, a rich bar on one."""
    if not enabled:
        return []
    if plain_lines():
        return [LogLines(stage)]
    try:
        return [_throttled_rich(0.25)]
    except (ImportError, ModuleNotFoundError):  # rich missing: Lightning's default bar
        return []
