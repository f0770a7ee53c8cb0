"""What every benchmark shares: environment, profiles, the in-process pipeline, statistics, tables.

Benchmarks call the stages exactly as users do (`validate(dict)` → `stages.X.run(cfg, inputs, outputs)`)
on temp directories under `benchmarks/results/tmp/` (gitignored), with MLflow on a throw-away sqlite file.
"""

from __future__ import annotations

import atexit
import copy
import json
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PROFILES = BENCH / "profiles"
RESULTS = BENCH / "results"
TMP = RESULTS / "tmp"
THREADS = 2
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1"}


def setup(threads: int = THREADS) -> Path:
    """Telemetry off, a private MLflow store, `threads` torch threads, quiet Lightning. Returns a scratch dir."""
    os.environ.update(TELEMETRY_OFF)
    TMP.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=TMP))
    db = TMP / f"mlflow-{os.getpid()}.db"  # one per process: creating the schema costs seconds
    if not db.exists():
        atexit.register(db.unlink, missing_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    import torch

    torch.set_num_threads(threads)
    import lightning  # noqa: F401  (their loggers exist once imported)
    import mlflow  # noqa: F401

    for name in [n for n in logging.root.manager.loggerDict if n.startswith(("lightning", "alembic", "mlflow"))]:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    return scratch


def loaded() -> bool:
    """Other work shares the CPUs (1-min load average above the core count): wall times count it too,
    so timing verdicts are judged on this process's CPU seconds instead."""
    return os.getloadavg()[0] > (os.cpu_count() or 1)


def child_env(threads: int) -> dict[str, str]:
    """Environment of a `kdflow` subprocess: same telemetry/MLflow settings, `threads` torch threads."""
    return {**os.environ, **TELEMETRY_OFF, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


# ---------------------------------------------------------------- profiles


def load_profile(name: str) -> dict:
    """`default` is the repo's params.yaml; otherwise `benchmarks/profiles/<name>.yaml` or a path."""
    import yaml

    path = ROOT / "params.yaml" if name == "default" else Path(name)
    if not path.is_file():
        path = PROFILES / f"{name}.yaml"
    return yaml.safe_load(path.read_text())


def with_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """A deep copy of `raw` with dotted keys set (`teacher.train.epochs` → 5)."""
    from kdflow.config import set_key

    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        set_key(out, key, value)
    return out


ROLES_TRAIN = ("teacher.train", "student.train", "distill.train")


def scale_epochs(raw: dict, factor: float) -> dict:
    """Quick runs: every training section's epochs × factor (at least 1)."""
    return with_overrides(raw, {f"{sec}.epochs": max(1, round(_get(raw, sec).get("epochs", 10) * factor))
                                for sec in ROLES_TRAIN})


def quiet_training(raw: dict) -> dict:
    """No progress bars in benchmark logs (the bar's refresh is not what we measure).

    Only sections the profile has: a bare `finetune.train` would get `Train()`'s 10 epochs, not 0.
    """
    sections = (*ROLES_TRAIN, "finetune.train")
    return with_overrides(raw, {f"{sec}.progress_bar": False for sec in sections if _get(raw, sec)})


def _get(raw: dict, dotted: str) -> dict:
    node = raw
    for part in dotted.split("."):
        node = node.get(part, {})
    return node


# ---------------------------------------------------------------- the pipeline, in process


def stage(name, raw_or_cfg, inputs: dict[str, Path], outputs: dict[str, Path], **kw) -> dict:
    """Run one stage (a registry name, or a stage function) like the CLI does; the summary gains
    `wall_seconds` and `cpu_seconds`."""
    from kdflow.config import Params, validate
    from kdflow.stages.registry import run_stage

    cfg = raw_or_cfg if isinstance(raw_or_cfg, Params) else validate(raw_or_cfg, "benchmark profile")
    t0, c0 = time.perf_counter(), time.process_time()
    summary = name(cfg, inputs, outputs, **kw) if callable(name) else run_stage(name, cfg, inputs, outputs, **kw)
    # CPU seconds next to wall seconds: on a shared machine the wall clock also counts others' work
    return {**summary, "wall_seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def pipeline(raw: dict, work: Path, reuse: dict[str, Path] | None = None,
             stages: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The registry's pipeline up to evaluate, in `work` (finetune only when it trains).

    `reuse` maps artifacts already built (`data`, `teacher`, `soft_targets`, `baseline`) to their directories;
    their stages are skipped. `stages` runs only those (in pipeline order). Returns each stage's summary,
    `metrics` (evaluate's metrics.json, when evaluate ran) and `paths`.
    """
    from kdflow.config import validate
    from kdflow.stages.registry import PIPELINE, get, run_pipeline

    cfg = validate(raw, "benchmark profile")
    declared = {"data": "data/prepared", "teacher": "models/teacher", "soft_targets": "soft_targets/teacher",
                "baseline": "models/baseline"}
    reused = {declared[k]: v for k, v in (reuse or {}).items() if v is not None}
    names = [n for n in PIPELINE[: PIPELINE.index("evaluate") + 1]
             if not (n == "soft_targets" and cfg.soft_targets.mode == "online")
             and not (n == "finetune" and not cfg.finetune.train.epochs)
             and (stages is None or n in stages)]
    student = "models/final" if cfg.finetune.train.epochs else "models/student"
    if student != "models/final":  # evaluate reads the distilled student directly
        reused["models/final"] = work / student
    out: dict[str, Any] = run_pipeline(cfg, work, tuple(names), reused, call=stage)
    where = lambda path: Path(reused.get(path, work / path))  # noqa: E731
    metrics = where(get("evaluate").outputs[0].path) / "metrics.json"
    if "evaluate" in names:
        out["metrics"] = json.loads(metrics.read_text())
    out["paths"] = {"data": where("data/prepared"), "teacher": where("models/teacher"),
                    "soft_targets": where("soft_targets/teacher"), "baseline": where("models/baseline"),
                    "student": where(student), "metrics": where("metrics")}
    return out


def image_npz(path: Path, x, y) -> str:
    """Write (N, 1, H, W) images + labels as an `npz:` source; returns the source string."""
    import numpy as np

    np.savez(path, x=np.asarray(x, np.float32), y=np.asarray(y, np.int64))
    return f"npz:{path}"


def digits28(path: Path) -> str:
    """scikit-learn's digits resized 8×8 → 28×28 (bilinear), the default data of the Hinton setup."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype("float32") / 16.0)[:, None]
    return image_npz(path, F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).numpy(), d.target)


def speed_fixture(work: Path, samples: int) -> tuple[dict, Path, Path]:
    """The Hinton MLPs on `samples` random 28×28 training images (+ val/test): (params, data dir, teacher dir).

    Content does not change a dense net's speed, so random pixels stand in for MNIST; the teacher is
    saved untrained (its weights do not change its cost either).
    """
    import numpy as np

    from kdflow.config import validate
    from kdflow.data.module import load_info
    from kdflow.models import build_model, save_model
    from kdflow.stages.common import spec_for

    rng = np.random.default_rng(0)
    held_out = min(2000, samples // 4)  # val and test each
    n = samples + 2 * held_out
    source = image_npz(work / "random28.npz", rng.random((n, 1, 28, 28), np.float32), rng.integers(0, 10, n))
    raw = quiet_training(with_overrides(load_profile("hinton"), {
        "data.source": source, "data.val_size": held_out, "data.test_size": held_out}))
    data = work / "data"
    stage("prepare", raw, {}, {"data": data})
    (work / "random28.npz").unlink()
    cfg = validate(raw)
    spec = spec_for(cfg.teacher.model, load_info(data))
    save_model(build_model(spec), work / "teacher", spec, role="teacher")
    return raw, data, work / "teacher"


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


def latest_run_history(raw: dict, metric: str = "val_acc", runs: int = 1) -> list[list[float]]:
    """The per-epoch values of `metric` in the newest `runs` MLflow runs, oldest run first."""
    from mlflow import MlflowClient

    from kdflow.config import validate

    c = MlflowClient()
    exp = c.get_experiment_by_name(validate(raw).register.experiment)
    found = c.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=runs)
    return [[m.value for m in sorted(c.get_metric_history(r.info.run_id, metric), key=lambda m: m.step)]
            for r in reversed(found)]


def latest_run_epochs(raw: dict, clock: CpuClock | None) -> dict[str, list[float]]:
    """Wall and CPU seconds between consecutive epoch ends of the newest MLflow run (its `val_acc` times).

    The stages log through Lightning's MLflow logger, so epoch times come from the run users inspect,
    without instrumenting the stage. The first epoch (warm-up) has no predecessor and never counts.
    """
    from mlflow import MlflowClient

    from kdflow.config import validate

    c = MlflowClient()
    exp = c.get_experiment_by_name(validate(raw).register.experiment)
    run = c.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    ends = [m.timestamp / 1e3 for m in sorted(c.get_metric_history(run.info.run_id, "val_acc"), key=lambda m: m.step)]
    cpu = [clock.at(t) for t in ends] if clock is not None else []  # a run of another process: wall only
    return {"wall": [b - a for a, b in zip(ends, ends[1:])], "cpu": [b - a for a, b in zip(cpu, cpu[1:])]}


def cleanup(path: Path, keep: bool = False) -> None:
    if not keep:
        shutil.rmtree(path, ignore_errors=True)


def fresh_dir(parent: Path, name: str) -> Path:
    path = parent / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# ---------------------------------------------------------------- statistics and tables


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    vals = [float(v) for v in values]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def pm(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """`mean ± std` (sample std over seeds); a single value prints alone."""
    m, s = mean_std([v * scale for v in values])
    return f"{m:.{digits}f}" if len(values) < 2 else f"{m:.{digits}f} ± {s:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# ---------------------------------------------------------------- machine and results


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_avg_1m": os.getloadavg()[0],  # > cores means other work shared the CPUs: timings are slower
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}


def write_result(name: str, doc: dict, results: Path = RESULTS) -> Path:
    """`results/<name>.json` with the machine and the date attached."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    path.write_text(json.dumps({"benchmark": name, "date": stamp, "machine": machine(), **doc}, indent=2,
                               default=str) + "\n")
    return path


def finish(name: str, sections: list[str], doc: dict, loaded: bool, results: Path, scratch: Path,
           keep: bool) -> dict:
    """Print the tables (with a note when other work loaded the machine), write results/<name>.json, clean up."""
    md = "\n\n".join(sections + (["Machine loaded during the run (load average > cores): wall times include "
                                   "other processes' work."] if loaded else []))
    print(md, flush=True)
    doc = {**doc, "markdown": md}
    write_result(name, doc, results)
    cleanup(scratch, keep)
    return doc


def size_of(args) -> str:
    return "dry" if args.dry else "quick" if args.quick else "full"


def run_main(run, argv: list[str] | None, doc: str) -> int:
    """`main()` of a benchmark whose whole work is `run(size, results, keep)`."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_common_args(p)
    a = p.parse_args(argv)
    run(size_of(a), a.results, a.keep)
    return 0


def add_common_args(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="the `make bench-quick` sizes (≤ 5 min in all)")
    parser.add_argument("--dry", action="store_true", help="tiny sizes that only exercise the harness (tests)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON results go")
    parser.add_argument("--keep", action="store_true", help="keep the temp work directories")
