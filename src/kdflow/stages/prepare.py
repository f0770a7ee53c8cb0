"""Stage `prepare`: load a source, split train/val/test (+ unlabeled transfer), write dataset/."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from kdflow import tracking
from kdflow.config import Params
from kdflow.data.module import UNLABELED
from kdflow.data.sources import load_source
from kdflow.data.split import channel_stats, leakage, stratified
from kdflow.errors import KdflowError
from kdflow.io import atomic_dir, write_json


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    d = cfg.data
    raw = load_source(d)
    n_classes = len(raw.classes)
    idx = np.arange(len(raw.y))
    if raw.x_test is None:
        idx, test_idx = stratified(idx, raw.y, d.test_size, d.seed, "data.test_size")
        test = {"x": raw.x[test_idx], "y": raw.y[test_idx], "id": test_idx}
    else:
        test_ids = np.arange(len(raw.y_test)) + len(raw.y)
        test = {"x": raw.x_test, "y": raw.y_test, "id": test_ids}
    idx, val_idx = stratified(idx, raw.y, d.val_size, d.seed + 1, "data.val_size")
    held = np.array([], np.int64)
    if d.train_limit is not None and d.train_limit < len(idx):
        held, idx = stratified(idx, raw.y, d.train_limit, d.seed + 2, "data.train_limit")
    splits = {
        "train": {"x": raw.x[idx], "y": raw.y[idx], "id": idx},
        "val": {"x": raw.x[val_idx], "y": raw.y[val_idx], "id": val_idx},
        "test": test,
    }
    if d.transfer_size:
        base = len(raw.y) + (0 if raw.x_test is None else len(raw.y_test))
        if raw.x_transfer is not None:
            xt, ids = raw.x_transfer, base + np.arange(len(raw.x_transfer))
        else:
            # No generator: hold back a part of the labeled pool, labels dropped.
            if not len(held):
                idx_rest, held = stratified(idx, raw.y, d.transfer_size, d.seed + 3, "data.transfer_size")
                splits["train"] = {"x": raw.x[idx_rest], "y": raw.y[idx_rest], "id": idx_rest}
            held = held[: d.transfer_size]
            xt, ids = raw.x[held], held
        splits["transfer"] = {"x": xt, "y": np.full(len(xt), UNLABELED, np.int64), "id": ids}

    for name in ("train", "val", "test"):
        y = splits[name]["y"]
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise KdflowError(f"{name} split: label {int(y.max())} out of range 0..{n_classes - 1}")
    dupes = leakage({k: v["x"] for k, v in splits.items()})
    if dupes.get("train~test", 0) and not d.allow_test_leakage:
        raise KdflowError(f"leakage: {dupes['train~test']} test samples also appear in train "
                          "(set data.allow_test_leakage: true to accept)")

    mean, std = channel_stats(splits["train"]["x"])
    arrays = {name: {"x": a["x"].astype(np.float32), "y": a["y"].astype(np.int64), "id": np.asarray(a["id"], np.int64)}
              for name, a in splits.items()}
    h = hashlib.sha256()
    for arrs in arrays.values():
        for k in ("x", "y", "id"):
            h.update(arrs[k].tobytes())
    info = {
        "source": d.source, "hash": h.hexdigest(), "rev": d.rev, "repo": d.repo,
        "input_shape": list(splits["train"]["x"].shape[1:]), "num_classes": n_classes,
        "classes": raw.classes, "normalization": {"mean": mean, "std": std},
        "counts": {k: int(len(v["y"])) for k, v in splits.items()},
        "class_counts": {k: np.bincount(v["y"], minlength=n_classes).tolist()
                         for k, v in splits.items() if k != "transfer"},
        "duplicates_across_splits": dupes, **raw.info,
    }
    with tracking.stage_run(cfg, "prepare", d.model_dump(mode="json"), info["hash"]):
        with atomic_dir(outputs["data"]) as tmp:
            for name, arrs in arrays.items():
                np.savez(tmp / f"{name}.npz", **arrs)
            write_json(tmp / "dataset.json", info)
        tracking.log_metrics({f"count.{k}": v for k, v in info["counts"].items()})
        tracking.set_tags({f"kdflow.data_{k}": str(info[k]) for k in ("rev", "repo", "content_sha256") if info.get(k)})
        tracking.log_artifacts(Path(outputs["data"]) / "dataset.json")
    return {"hash": info["hash"], "counts": info["counts"], "input_shape": info["input_shape"],
            "duplicates": dupes}
