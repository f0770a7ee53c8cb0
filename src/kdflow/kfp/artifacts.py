"""What components need besides a stage call: artifact checks and the KFP UI views of kdflow outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdflow.io import read_json, require_dir


def load_info(data_dir: str | Path) -> dict:
    # kdflow.data.module.load_info without importing Lightning (seconds per pipeline step)
    return read_json(require_dir(data_dir, "dataset", "dataset.json") / "dataset.json", "dataset manifest")


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


def use_scratch(scratch: str) -> None:
    """Stage large inputs on the KFP workspace PVC (when the pipeline has one) instead of the node's
    ephemeral disk: temp files (DVC fetches) and, unless a data-cache PVC is mounted, DVC's cache."""
    import os
    import tempfile

    if not scratch:
        return
    tmp = Path(scratch) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None  # re-read TMPDIR
    os.environ.setdefault("KDFLOW_DATA_CACHE", str(Path(scratch) / "data-cache"))
