"""What components need besides a stage call: artifact checks and the KFP UI views of kdflow outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdflow.errors import KdflowError
from kdflow.io import read_json, require_dir


def load_info(data_dir: str | Path) -> dict:
    # kdflow.data.module.load_info without importing Lightning (seconds per pipeline step)
    return read_json(require_dir(data_dir, "dataset", "dataset.json") / "dataset.json", "dataset manifest")


def check_data(path: str | Path, data_hash: str) -> Path:
    """The dataset at `path` must be the one whose hash the step was keyed on; a mismatch means a
    stale cache hit or a mixed-up input, and training on it would break lineage."""
    path = Path(path)
    actual = load_info(path)["hash"]
    if actual != data_hash:
        raise KdflowError(f"dataset {path} has hash {actual[:12]}… but this step was keyed on {data_hash[:12]}…")
    return path


def metrics_views(metrics_dir: str | Path, data_dir: str | Path) -> tuple[dict[str, float], list[str],
                                                                      list[list[int]]]:
    """(scalars, class names, student confusion matrix) of an evaluate output, for the KFP UI."""
    metrics_dir = Path(metrics_dir)
    flat = read_json(metrics_dir / "metrics.json", "metrics")
    scalars = {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and ".class_share." not in k}
    matrix = np.loadtxt(metrics_dir / "plots" / "confusion_matrix.txt", dtype=np.int64, ndmin=2)
    return scalars, [str(c) for c in load_info(data_dir)["classes"]], matrix.tolist()


def dataset_metadata(data_dir: str | Path) -> dict:
    """What the KFP UI shows on a dataset artifact: content hash, source, DVC revision, split sizes."""
    info = load_info(data_dir)
    return {k: info[k] for k in ("hash", "source", "rev", "repo", "counts", "content_sha256") if info.get(k)}
