"""Stage `soft_targets`: the teacher's raw logits for train/val/transfer, float16 shards by sample id.

A sentence encoder (`task: embedding`) stores its embeddings instead (manifest `target: embedding`).

`shard_index`/`num_shards` take a contiguous slice of the samples, so several processes (or KFP
ParallelFor tasks) can each write part of the store and `merge_soft_targets` joins them. A
streaming dataset is read batch by batch (decoded in loader workers, eval view) and each store
shard is written as it fills, so memory does not grow with N.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from kdflow import tasks, tracking
from kdflow.config import Params
from kdflow.data.reader import open_dataset
from kdflow.errors import KdflowError
from kdflow.inference import engine
from kdflow.io import atomic_dir, sha256_file
from kdflow.models import load_model
from kdflow.progress import Ticker
from kdflow.soft_target_store import StoreWriter
from kdflow.stages.common import check_classes, need


def teacher_logits(model: torch.nn.Module, x: np.ndarray, batch_size: int, backend: str = "torch") -> np.ndarray:
    xt = torch.from_numpy(x)
    run = engine(model, {"input_shape": list(x.shape[1:]), "input_dtype": str(x.dtype)}, backend)
    return run.predict(xt, batch_size).reshape(len(x), -1).numpy()


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path], shard_index: int = 0,
        num_shards: int = 1) -> dict:
    data, teacher_dir = need(inputs, "data", "soft_targets"), need(inputs, "teacher", "soft_targets")
    out = need(outputs, "soft_targets", "soft_targets")
    if not 0 <= shard_index < num_shards:
        raise KdflowError(f"shard index {shard_index} out of range for {num_shards} shards")
    reader = open_dataset(data)
    info = reader.info
    teacher, spec = load_model(teacher_dir)
    check_classes(spec, info, f"teacher {teacher_dir}")
    st = cfg.soft_targets
    splits = reader.present(st.splits)
    n = reader.count(splits)
    lo, hi = n * shard_index // num_shards, n * (shard_index + 1) // num_shards
    teacher = engine(teacher, spec, cfg.inference.backend, bulk=True)
    with tracking.stage_run(cfg, "soft_targets", st.model_dump(mode="json"), info["hash"]):
        meta = {**tasks.of_spec(spec).store_meta(spec), "teachers": [{"path": str(teacher_dir), "name": spec["name"],
                              "weights_sha256": sha256_file(Path(teacher_dir) / "model.pt")}],
                "data_hash": info["hash"], "backend": teacher.backend,
                "splits": splits, "shard_index": shard_index, "num_shards": num_shards}
        ticker = Ticker("soft_targets", total=hi - lo)
        t0 = time.perf_counter()
        with atomic_dir(out) as tmp:
            writer = StoreWriter(tmp, st.shard_size, st.topk, meta)
            for x, _, ids in reader.batches(splits, st.batch_size, lo, hi):
                writer.add(ids, teacher(x).numpy())
                ticker.update(len(ids))
            manifest = writer.close()
        seconds = time.perf_counter() - t0
        ticker.finish()
        summary = {"samples": int(manifest["num_samples"]), "seconds": seconds,
                   "samples_per_second": manifest["num_samples"] / max(seconds, 1e-9),
                   "checksum": manifest["checksum"]}
        tracking.log_metrics(summary)
        tracking.log_artifacts(out / "soft_targets.json")
    return summary
