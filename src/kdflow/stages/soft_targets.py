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
from kdflow.data.module import has_split, is_streaming, load_info, load_split, split_ids
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


def _batches(data: Path, info: dict, splits: list[str], lo: int, hi: int, batch_size: int):
    """(x, ids) batches of samples lo..hi of the concatenated splits."""
    if info.get("modality") == "text":  # ragged token ids, padded per batch
        from kdflow.data.tokenized import TokenBatches, read_split

        # Batches of similar length (the store is keyed by id, so order is free): SST-2-like data mixes 3-token
        # phrases with 60-token sentences, and padding each batch to its longest would cost the teacher ~3×.
        ds = TokenBatches([read_split(data, s) for s in splits], info["tokenizer"]["pad_id"])
        rows = np.arange(lo, min(hi, len(ds)))
        rows = rows[np.argsort(np.diff(ds.offsets)[rows], kind="stable")]
        for i in range(0, len(rows), batch_size):
            x, _, ids = ds[torch.from_numpy(rows[i:i + batch_size])]
            yield x, ids.numpy()
        return
    if is_streaming(info):
        from kdflow.data.streaming import iter_split

        start = 0
        for s in splits:
            n = len(split_ids(data, s))
            a, b = max(lo - start, 0), min(hi - start, n)
            if a < b:
                for x, _, ids in iter_split(data, s, info, batch_size, rows=(a, b)):
                    yield x, ids.numpy()
            start += n
        return
    parts = [load_split(data, s) for s in splits]
    x = np.concatenate([p["x"] for p in parts])[lo:hi]
    ids = np.concatenate([p["id"] for p in parts])[lo:hi]
    for i in range(0, len(ids), batch_size):
        yield torch.from_numpy(x[i:i + batch_size]), ids[i:i + batch_size]


def _count(data: Path, splits: list[str]) -> int:
    return sum(len(split_ids(data, s)) for s in splits)


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
    splits = [s for s in st.splits if has_split(data, s)]
    n = _count(Path(data), splits)
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
            for x, ids in _batches(Path(data), info, splits, lo, hi, st.batch_size):
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
