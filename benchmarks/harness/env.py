"""Paths, the benchmark process's set-up, subprocess environments and scratch directories."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


def child_env(threads: int) -> dict[str, str]:
    """Environment of a `kdflow` subprocess: same telemetry/MLflow settings, `threads` torch threads."""
    return {**os.environ, **TELEMETRY_OFF, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def cleanup(path: Path, keep: bool = False) -> None:
    if not keep:
        shutil.rmtree(path, ignore_errors=True)


def fresh_dir(parent: Path, name: str) -> Path:
    path = parent / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
