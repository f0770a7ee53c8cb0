"""Stage `train_teacher`: the teacher on hard labels (with augmentation if configured), or — with
`teacher.source` — an existing model imported instead of trained.

An imported teacher is checked against the data (input shape, class count and names), scored on
the validation split like a trained one, and written as an ordinary kdflow model directory whose
`model.json` records the source URI and the sha256 of every file read (lineage; MLflow tags
`kdflow.teacher.source_uri`/`..._sha256`). Soft targets, evaluate and distill then load it as usual.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from kdflow import tracking
from kdflow.config import Params
from kdflow.data.reader import load_info, open_dataset
from kdflow.io import atomic_dir, need
from kdflow.stages.common import attach_tokenizer, check_task, ckpt_dir_for, train_on_labels


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    if cfg.teacher.source is not None:
        return import_teacher(cfg, inputs, outputs)
    return train_on_labels(cfg, "train_teacher", "teacher", inputs, outputs)


@torch.inference_mode()
def val_accuracy(model: torch.nn.Module, data: Path, info: dict, batch_size: int) -> float:
    """Accuracy on the validation split, batch by batch (a streaming split is never held whole)."""
    batches = ((x, y) for x, y, _ in open_dataset(data).batches(["val"], batch_size))
    correct = total = 0
    for xb, yb in batches:
        correct += int((model(xb).argmax(1) == yb).sum())
        total += len(yb)
    return correct / max(total, 1)


def import_teacher(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    from kdflow.models.imported import import_model, save_imported

    data, out = need(inputs, "data", "train_teacher"), need(outputs, "model", "train_teacher")
    info = load_info(data)
    src = cfg.teacher.source
    with tracking.stage_run(cfg, "train_teacher", cfg.teacher.model_dump(mode="json"), info["hash"]):
        t0 = time.perf_counter()
        model, spec, loaded = import_model(src, info, "teacher")
        check_task(cfg, spec, f"teacher.source '{src.uri}'")
        # a sentence encoder has no accuracy of its own: evaluate scores it with a linear probe
        acc = None if loaded.embedding else val_accuracy(model, data, info, cfg.soft_targets.batch_size)
        seconds = time.perf_counter() - t0
        sha = spec["source"]["sha256"]
        lineage = {**tracking.lineage(cfg, info["hash"]), "source_uri": src.uri,
                   "source_sha256": ",".join(f"{k}={v}" for k, v in sorted(sha.items()))}
        meta = {"role": "teacher", "lineage": lineage,
                "training": {"imported": True, "epochs_run": 0, "best_val_acc": acc, "seconds": round(seconds, 2)}}
        with atomic_dir(out) as tmp:
            doc = save_imported(model, spec, loaded, tmp, **meta)
            attach_tokenizer(tmp, data)
        ckpt_dir_for(outputs, out).mkdir(parents=True, exist_ok=True)  # a declared (persisted) DVC output
        tracking.set_tags({"kdflow.teacher.source_uri": src.uri,
                           "kdflow.teacher.source_sha256": lineage["source_sha256"][:5000]})
        summary = {"imported": src.uri, "params": doc["params"], "best_val_acc": acc, "seconds": seconds}
        tracking.log_metrics({"params": doc["params"], **({"best_val_acc": acc} if acc is not None else {})})
        tracking.log_artifacts(out / "model.json")
    return summary
