"""Stage `merge_soft_targets`: join the shard stores of ONE teacher into one store.

`soft_targets.run(..., shard_index=i, num_shards=n)` writes a contiguous slice of the samples
per shard; concatenating the slices in shard order gives the same ids and logits as a single
generation. Every input is one shard store (any input key); the merge refuses stores of
different teachers or datasets, missing or repeated shards, and duplicated sample ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdflow.config import Params
from kdflow.errors import KdflowError
from kdflow.io import atomic_dir, need
from kdflow.soft_target_store import read_store, write_store

SAME = ("num_classes", "topk", "data_hash", "splits", "num_shards")


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    out = need(outputs, "soft_targets", "merge_soft_targets")
    if not inputs:
        raise KdflowError("merge_soft_targets needs at least one shard store")
    stores = [read_store(path) + (str(path),) for path in inputs.values()]
    stores.sort(key=lambda s: s[2].get("shard_index", 0))
    first = next((s[2] for s in stores if s[2]["num_samples"]), stores[0][2])
    for _, _, m, path in stores:
        for key in SAME:
            if key == "num_classes" and not m["num_samples"]:
                continue  # an empty shard (more shards than samples) has no class dimension
            if m.get(key) != first.get(key):
                raise KdflowError(f"shard {path} differs in {key}: {m.get(key)!r} vs {first.get(key)!r}")
        if _weights(m) != _weights(first):
            raise KdflowError(f"shard {path} comes from another teacher ({_weights(m)} vs {_weights(first)})")
    indices = [m.get("shard_index", 0) for _, _, m, _ in stores]
    expected = list(range(first.get("num_shards", 1)))
    if indices != expected:
        raise KdflowError(f"shards {indices} do not cover 0..{expected[-1]} exactly once")
    full = [s for s in stores if s[2]["num_samples"]] or stores[:1]
    ids = np.concatenate([s[0] for s in full])
    logits = np.concatenate([s[1] for s in full])
    if len(np.unique(ids)) != len(ids):
        raise KdflowError("shards repeat sample ids: they were not cut from the same sample order")
    meta = {k: first[k] for k in ("teachers", "data_hash", "splits") if k in first}
    meta |= {"shard_index": 0, "num_shards": 1, "merged_from": [m["checksum"] for _, _, m, _ in stores]}
    with atomic_dir(out) as tmp:
        manifest = write_store(tmp, ids, logits, cfg.soft_targets.shard_size, first.get("topk"), meta)
    return {"samples": int(len(ids)), "shards_merged": len(stores), "checksum": manifest["checksum"]}


def _weights(manifest: dict) -> list[str]:
    return [t.get("weights_sha256", "") for t in manifest.get("teachers", [])]
