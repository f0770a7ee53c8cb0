"""CPU seconds at past wall-clock times, and per-epoch values and times read back from the MLflow run."""

from __future__ import annotations

import time


class CpuClock:
    """This process's CPU seconds at any past wall-clock time.

    A daemon thread samples (time.time(), process_time()) every `period` s, so epoch ends known only by
    their wall timestamps (the MLflow run's) get CPU times too. On a shared machine wall time also counts
    other processes' work; CPU time does not (with OMP_WAIT_POLICY=PASSIVE, idle threads do not spin).
    """

    def __init__(self, period: float = 0.02):
        import threading

        self.samples: list[tuple[float, float]] = [(time.time(), time.process_time())]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            self.samples.append((time.time(), time.process_time()))

    def at(self, wall: float) -> float:
        import bisect

        i = min(max(bisect.bisect_left(self.samples, (wall,)), 1), len(self.samples) - 1)
        (w0, c0), (w1, c1) = self.samples[i - 1], self.samples[i]
        return c0 + (c1 - c0) * min(max((wall - w0) / max(w1 - w0, 1e-9), 0.0), 1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _latest_runs(raw: dict, runs: int):
    from mlflow import MlflowClient

    from kdflow.config import validate

    c = MlflowClient()
    exp = c.get_experiment_by_name(validate(raw).register.experiment)
    return c, c.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=runs)


def latest_run_history(raw: dict, metric: str = "val_acc", runs: int = 1) -> list[list[float]]:
    """The per-epoch values of `metric` in the newest `runs` MLflow runs, oldest run first."""
    c, found = _latest_runs(raw, runs)
    return [[m.value for m in sorted(c.get_metric_history(r.info.run_id, metric), key=lambda m: m.step)]
            for r in reversed(found)]


def latest_run_epochs(raw: dict, clock: CpuClock | None) -> dict[str, list[float]]:
    """Wall and CPU seconds between consecutive epoch ends of the newest MLflow run (its `val_acc` times).

    The stages log through Lightning's MLflow logger, so epoch times come from the run users inspect,
    without instrumenting the stage. The first epoch (warm-up) has no predecessor and never counts.
    """
    c, (run, *_) = _latest_runs(raw, 1)
    ends = [m.timestamp / 1e3 for m in sorted(c.get_metric_history(run.info.run_id, "val_acc"), key=lambda m: m.step)]
    cpu = [clock.at(t) for t in ends] if clock is not None else []  # a run of another process: wall only
    return {"wall": [b - a for a, b in zip(ends, ends[1:])], "cpu": [b - a for a, b in zip(cpu, cpu[1:])]}
