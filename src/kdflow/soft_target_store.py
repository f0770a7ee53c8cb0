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
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np
import torch

from kdflow.errors import KdflowError
from kdflow.io import read_json, require_dir, sha256_file, write_json

MANIFEST = "soft_targets.json"


class StoreWriter:
    """Writes shards as they fill, then the manifest: soft targets of any N in bounded memory.

    `out` is a temp dir owned by the caller. Logits are (n, C) for one teacher or (n, K, C) for K
    teachers (full logits only, no top-k).
    """

    def __init__(self, out: Path, shard_size: int, topk: int | None, meta: dict):
        self.out, self.shard_size, self.topk, self.meta = Path(out), shard_size, topk, meta
        self.out.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict] = []
        self.total = hashlib.sha256()
        self.buf_ids: list[np.ndarray] = []
        self.buf_logits: list[np.ndarray] = []
        self.buffered = self.count = 0
        self.tail_shape: tuple | None = None

    def add(self, ids: np.ndarray, logits: np.ndarray) -> None:
        if logits.ndim == 3 and self.topk:
            raise KdflowError("top-k storage is for single-teacher stores; a multi-teacher store keeps full logits")
        self.tail_shape = logits.shape[1:]
        self.buf_ids.append(np.asarray(ids, np.int64))
        self.buf_logits.append(np.asarray(logits, np.float32))
        self.buffered += len(ids)
        while self.buffered >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, n: int) -> None:
        ids, logits = np.concatenate(self.buf_ids), np.concatenate(self.buf_logits)
        self.buf_ids, self.buf_logits = [ids[n:]], [logits[n:]]
        self.buffered = len(ids) - n
        self._write(ids[:n], logits[:n])

    def _write(self, ids: np.ndarray, logits: np.ndarray) -> None:
        arrs: dict[str, np.ndarray] = {"id": ids}
        if self.topk:
            lg = torch.from_numpy(logits)
            val, idx = lg.topk(self.topk, dim=1)
            tail = (lg.sum(1) - val.sum(1)) / max(lg.shape[1] - self.topk, 1)
            arrs |= {"topk_idx": idx.numpy().astype(np.int16), "topk_val": val.numpy().astype(np.float16),
                     "tail_mean": tail.numpy().astype(np.float16)}
        else:
            arrs["logits"] = logits.astype(np.float16)
        name = f"shard-{len(self.shards):05d}.npz"
        np.savez(self.out / name, **arrs)
        digest = sha256_file(self.out / name)
        self.total.update(digest.encode())
        self.shards.append({"file": name, "count": int(len(ids)), "sha256": digest})
        self.count += len(ids)

    def close(self) -> dict:
        if self.buffered or not self.shards:
            ids = np.concatenate(self.buf_ids) if self.buf_ids else np.zeros(0, np.int64)
            logits = (np.concatenate(self.buf_logits) if self.buf_logits
                      else np.zeros((0, *(self.tail_shape or (0,))), np.float32))
            self._write(ids, logits)
            self.buffered = 0
        shape = self.tail_shape or (0,)
        manifest = {**self.meta, "num_samples": int(self.count), "num_classes": int(shape[-1]), "topk": self.topk,
                    "dtype": "float16", "raw_logits": True, "shards": self.shards, "checksum": self.total.hexdigest()}
        if len(shape) == 2:
            manifest["num_teachers"] = int(shape[0])
        write_json(self.out / MANIFEST, manifest)
        return manifest


def write_store(out: Path, ids: np.ndarray, logits: np.ndarray, shard_size: int, topk: int | None,
                meta: dict) -> dict:
    """Write shards and the manifest into `out` (a temp dir owned by the caller)."""
    writer = StoreWriter(out, shard_size, topk, meta)
    writer.add(ids, logits)
    return writer.close()


def iter_shards(path: str | Path, verify: bool = True):
    """(manifest, [shard arrays, ...]) one shard at a time, checksums verified."""
    path = require_dir(path, "soft targets", MANIFEST)
    manifest = read_json(path / MANIFEST, "soft-target manifest")

    def shards():
        for shard in manifest["shards"]:
            f = path / shard["file"]
            if not f.is_file():
                raise KdflowError(f"soft-target shard missing: {f}")
            if verify and sha256_file(f) != shard["sha256"]:
                raise KdflowError(f"soft-target shard {f} fails its checksum: corrupt or modified")
            with np.load(f, allow_pickle=False) as d:
                yield {k: d[k] for k in d.files}
    return manifest, shards()


def expand_topk(idx: np.ndarray, val: np.ndarray, tail: np.ndarray, c: int) -> np.ndarray:
    full = np.repeat(tail.astype(np.float32)[:, None], c, axis=1)
    np.put_along_axis(full, idx.astype(np.int64), val.astype(np.float32), axis=1)
    return full


def read_store(path: str | Path, verify: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """All (ids, float32 logits) of a store, checksums verified; logits are (N, K, C) for K > 1 teachers."""
    manifest, shards = iter_shards(path, verify)
    c = manifest["num_classes"]
    ids, logits = [], []
    for d in shards:
        ids.append(d["id"])
        logits.append(d["logits"].astype(np.float32) if "logits" in d
                      else expand_topk(d["topk_idx"], d["topk_val"], d["tail_mean"], c))
    return np.concatenate(ids), np.concatenate(logits), manifest


def lookup_table(path: str | Path) -> torch.Tensor:
    """A dense (max_id + 1, C) tensor so a batch's teacher logits are one index: table[batch_ids].

    Rows of ids the store does not hold are NaN, so a join error cannot pass silently.
    """
    ids, logits, _ = read_store(path)
    table = torch.full((int(ids.max()) + 1, *logits.shape[1:]), float("nan"))
    table[torch.from_numpy(ids)] = torch.from_numpy(logits)
    return table


class MappedTable:
    """The store as an id-indexed table on disk, memory-mapped: `table[batch_ids]` reads just those rows.

    Built shard by shard (memory bounded by one shard, not N); top-k stores stay top-k on disk and are
    expanded per batch. Rows of ids the store does not hold are NaN, like `lookup_table`'s. Duck-types the
    parts of a tensor the distiller uses (`[ids]`, `dim`, `shape`, `to`).
    """

    def __init__(self, path: str | Path, workdir: str | Path | None = None):
        path = require_dir(path, "soft targets", MANIFEST)
        manifest = read_json(path / MANIFEST, "soft-target manifest")
        self.c, self.topk = manifest["num_classes"], manifest.get("topk")
        k = manifest.get("num_teachers")
        row = (k, self.c) if k else (self.c,)
        self._dir = Path(tempfile.mkdtemp(prefix="kdflow-table-", dir=workdir))
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        rows = 0
        for shard in manifest["shards"]:  # sizing pass: checksums and ids only (ids are dense sample indices)
            f = path / shard["file"]
            if not f.is_file() or sha256_file(f) != shard["sha256"]:
                raise KdflowError(f"soft-target shard {f} is missing or fails its checksum: corrupt or modified")
            with np.load(f, allow_pickle=False) as d:
                rows = max(rows, int(d["id"].max()) + 1 if len(d["id"]) else 0)
        self.shape = (rows, *row)
        self.device = torch.device("cpu")
        width = self.topk or self.c
        mk = lambda name, dtype, shape: np.lib.format.open_memmap(self._dir / name, "w+", dtype, shape)  # noqa: E731
        self.present = mk("present.npy", np.bool_, (rows,))
        if self.topk:
            self.idx, self.val = mk("idx.npy", np.int16, (rows, width)), mk("val.npy", np.float16, (rows, width))
            self.tail = mk("tail.npy", np.float16, (rows,))
        else:
            self.logits = mk("logits.npy", np.float16, (rows, *row))
        _, shards = iter_shards(path, verify=False)  # checksums were verified by the sizing pass
        for d in shards:
            i = d["id"]
            self.present[i] = True
            if self.topk:
                self.idx[i], self.val[i], self.tail[i] = d["topk_idx"], d["topk_val"], d["tail_mean"]
            else:
                self.logits[i] = d["logits"]
        for a in (self.present, *([self.idx, self.val, self.tail] if self.topk else [self.logits])):
            a.flush()

    def __len__(self) -> int:
        return self.shape[0]

    def dim(self) -> int:
        return len(self.shape)

    def to(self, device) -> MappedTable:
        self.device = torch.device(device)
        return self

    def rows(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        inside = (ids >= 0) & (ids < len(self))
        safe = np.where(inside, ids, 0)
        if self.topk:
            out = expand_topk(self.idx[safe], self.val[safe], self.tail[safe], self.c)
        else:
            out = self.logits[safe].astype(np.float32)
        out[~(inside & self.present[safe])] = np.nan
        return out

    def __getitem__(self, ids) -> torch.Tensor:
        if isinstance(ids, torch.Tensor):
            ids = ids.cpu().numpy()
        return torch.from_numpy(self.rows(np.atleast_1d(ids))).to(self.device)


def count_missing(table, ids: np.ndarray, chunk: int = 65536) -> int:
    """How many of `ids` a (dense or mapped) table lacks, checked in chunks."""
    ids = np.asarray(ids, np.int64)
    missing = int(((ids < 0) | (ids >= len(table))).sum())
    ok = ids[(ids >= 0) & (ids < len(table))]
    for i in range(0, len(ok), chunk):
        rows = table[torch.from_numpy(ok[i:i + chunk])]
        missing += int(torch.isnan(rows).flatten(1).any(1).sum())
    return missing
