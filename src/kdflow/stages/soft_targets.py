"""Stage `soft_targets`: the teacher's raw logits for train/val/transfer, float16 shards by sample id.

`shard_index`/`num_shards` take a contiguous slice of the samples, so several processes (or KFP
ParallelFor tasks) can each write part of the store and `merge_soft_targets` joins them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from kdflow import tracking
from kdflow.config import Params
from kdflow.data.module import load_info, load_split
from kdflow.errors import KdflowError
from kdflow.io import atomic_dir, sha256_file
from kdflow.models import load_model
from kdflow.soft_targets import write_store
from kdflow.stages.common import check_classes, need


@torch.inference_mode()
def teacher_logits(model: torch.nn.Module, x: np.ndarray, batch_size: int) -> np.ndarray:
    xt = torch.from_numpy(x)
    out = torch.empty((len(x), 0))
    chunks = [model(xt[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    if chunks:
        out = torch.cat(chunks)
    return out.float().numpy()


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path], shard_index: int = 0,
        num_shards: int = 1) -> dict:
    data, teacher_dir = need(inputs, "data", "soft_targets"), need(inputs, "teacher", "soft_targets")
    out = need(outputs, "soft_targets", "soft_targets")
    if not 0 <= shard_index < num_shards:
        raise KdflowError(f"shard index {shard_index} out of range for {num_shards} shards")
    info = load_info(data)
    teacher, spec = load_model(teacher_dir)
    check_classes(spec, info, f"teacher {teacher_dir}")
    st = cfg.soft_targets
    splits = [s for s in st.splits if (Path(data) / f"{s}.npz").is_file()]
    parts = [load_split(data, s) for s in splits]
    x = np.concatenate([p["x"] for p in parts])
    ids = np.concatenate([p["id"] for p in parts])
    lo, hi = len(ids) * shard_index // num_shards, len(ids) * (shard_index + 1) // num_shards
    x, ids = x[lo:hi], ids[lo:hi]
    with tracking.stage_run(cfg, "soft_targets", st.model_dump(mode="json"), info["hash"]):
        t0 = time.perf_counter()
        logits = teacher_logits(teacher, x, st.batch_size)
        seconds = time.perf_counter() - t0
        meta = {"teachers": [{"path": str(teacher_dir), "name": spec["name"],
                              "weights_sha256": sha256_file(Path(teacher_dir) / "model.pt")}],
                "data_hash": info["hash"], "splits": splits, "shard_index": shard_index, "num_shards": num_shards}
        with atomic_dir(out) as tmp:
            manifest = write_store(tmp, ids, logits, st.shard_size, st.topk, meta)
        summary = {"samples": int(len(ids)), "seconds": seconds,
                   "samples_per_second": len(ids) / max(seconds, 1e-9), "checksum": manifest["checksum"]}
        tracking.log_metrics(summary)
        tracking.log_artifacts(out / "soft_targets.json")
    return summary
