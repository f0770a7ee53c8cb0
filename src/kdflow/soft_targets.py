"""The teacher-logit store: float16 shards keyed by sample id, plus `soft_targets.json`.

Logits are raw (temperature-free), so one generation serves every temperature. With top-k,
a shard keeps the k largest logits and the mean of the rest; reading fills the other classes
with that mean, which keeps the tail's mass roughly right at any temperature.

A multi-teacher store (`combine_teachers`) holds every teacher's raw logits, shape (N, K, C), and
lists the K teachers in order under `teachers`; the distiller averages their tempered
probabilities at training time (`kdflow.losses.ensemble`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from kdflow.errors import KdflowError
from kdflow.io import read_json, require_dir, sha256_file, write_json

MANIFEST = "soft_targets.json"


def write_store(out: Path, ids: np.ndarray, logits: np.ndarray, shard_size: int, topk: int | None,
                meta: dict) -> dict:
    """Write shards and the manifest into `out` (a temp dir owned by the caller).

    `logits` is (N, C) for one teacher or (N, K, C) for K teachers (full logits only, no top-k).
    """
    if logits.ndim == 3 and topk:
        raise KdflowError("top-k storage is for single-teacher stores; a multi-teacher store keeps full logits")
    out.mkdir(parents=True, exist_ok=True)
    shards, total = [], hashlib.sha256()
    for n, start in enumerate(range(0, max(len(ids), 1), shard_size)):
        sl = slice(start, start + shard_size)
        arrs: dict[str, np.ndarray] = {"id": ids[sl].astype(np.int64)}
        if topk:
            lg = torch.from_numpy(logits[sl].astype(np.float32))
            val, idx = lg.topk(topk, dim=1)
            tail = (lg.sum(1) - val.sum(1)) / max(lg.shape[1] - topk, 1)
            arrs |= {"topk_idx": idx.numpy().astype(np.int16), "topk_val": val.numpy().astype(np.float16),
                     "tail_mean": tail.numpy().astype(np.float16)}
        else:
            arrs["logits"] = logits[sl].astype(np.float16)
        name = f"shard-{n:05d}.npz"
        np.savez(out / name, **arrs)
        digest = sha256_file(out / name)
        total.update(digest.encode())
        shards.append({"file": name, "count": int(len(arrs["id"])), "sha256": digest})
    manifest = {**meta, "num_samples": int(len(ids)), "num_classes": int(logits.shape[-1]), "topk": topk,
                "dtype": "float16", "raw_logits": True, "shards": shards, "checksum": total.hexdigest()}
    if logits.ndim == 3:
        manifest["num_teachers"] = int(logits.shape[1])
    write_json(out / MANIFEST, manifest)
    return manifest


def read_store(path: str | Path, verify: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """All (ids, float32 logits) of a store, checksums verified; logits are (N, K, C) for K > 1 teachers."""
    path = require_dir(path, "soft targets", MANIFEST)
    manifest = read_json(path / MANIFEST, "soft-target manifest")
    c = manifest["num_classes"]
    ids, logits = [], []
    for shard in manifest["shards"]:
        f = path / shard["file"]
        if not f.is_file():
            raise KdflowError(f"soft-target shard missing: {f}")
        if verify and sha256_file(f) != shard["sha256"]:
            raise KdflowError(f"soft-target shard {f} fails its checksum: corrupt or modified")
        with np.load(f, allow_pickle=False) as d:
            ids.append(d["id"])
            if "logits" in d.files:
                logits.append(d["logits"].astype(np.float32))
            else:
                full = np.repeat(d["tail_mean"].astype(np.float32)[:, None], c, axis=1)
                np.put_along_axis(full, d["topk_idx"].astype(np.int64), d["topk_val"].astype(np.float32), axis=1)
                logits.append(full)
    return np.concatenate(ids), np.concatenate(logits), manifest


def lookup_table(path: str | Path) -> torch.Tensor:
    """A dense (max_id + 1, C) tensor so a batch's teacher logits are one index: table[batch_ids].

    Rows of ids the store does not hold are NaN, so a join error cannot pass silently.
    """
    ids, logits, _ = read_store(path)
    table = torch.full((int(ids.max()) + 1, *logits.shape[1:]), float("nan"))
    table[torch.from_numpy(ids)] = torch.from_numpy(logits)
    return table
