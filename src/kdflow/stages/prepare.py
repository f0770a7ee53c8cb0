"""Stage `prepare`: load a source, split train/val/test (+ unlabeled transfer), write dataset/.

Two backends (docs/data.md): small data as float arrays in `.npz` (loaded whole), large data of
encoded images as streaming Arrow splits (`kdflow.data.streaming`). `data.format: auto` picks
streaming for an encoded-image source whose decoded float32 size exceeds `data.memory_limit_mb`.
Both use the same split plan, so the same source gives the same ids in either backend.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from kdflow import tracking
from kdflow.config import Data, Params
from kdflow.data.reader import UNLABELED
from kdflow.data.sources import Raw, load_source
from kdflow.data.split import channel_stats, leakage, stratified
from kdflow.errors import KdflowError
from kdflow.io import atomic_dir, write_json
from kdflow.progress import Ticker

STATS_SAMPLES = 4096  # streaming: normalization statistics from at most this many train images


def plan(y: np.ndarray, n_test: int | None, n_generated: int, d: Data) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """split -> (part, positions in that part, global ids). Parts: `pool` (labels `y`), `test` (a
    predefined test split of `n_test`), `generated` (an unlabeled pool from a generator)."""
    n = len(y)
    idx = np.arange(n)
    if n_test is None:
        idx, test_idx = stratified(idx, y, d.test_size, d.seed, "data.test_size")
        test = ("pool", test_idx, test_idx)
    else:
        test = ("test", np.arange(n_test), np.arange(n_test) + n)
    idx, val_idx = stratified(idx, y, d.val_size, d.seed + 1, "data.val_size")
    held = np.array([], np.int64)
    if d.train_limit is not None and d.train_limit < len(idx):
        held, idx = stratified(idx, y, d.train_limit, d.seed + 2, "data.train_limit")
    splits = {"train": ("pool", idx, idx), "val": ("pool", val_idx, val_idx), "test": test}
    if d.transfer_size:
        if n_generated:
            base = n + (n_test or 0)
            splits["transfer"] = ("generated", np.arange(n_generated), base + np.arange(n_generated))
        else:
            # No generator: hold back a part of the labeled pool, labels dropped.
            if not len(held):
                idx_rest, held = stratified(idx, y, d.transfer_size, d.seed + 3, "data.transfer_size")
                splits["train"] = ("pool", idx_rest, idx_rest)
            held = held[: d.transfer_size]
            splits["transfer"] = ("pool", held, held)
    return splits


def _check_labels(labels: dict[str, np.ndarray], n_classes: int) -> None:
    for name in ("train", "val", "test"):
        y = labels[name]
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise KdflowError(f"{name} split: label {int(y.max())} out of range 0..{n_classes - 1}")


def _check_leakage(dupes: dict[str, int], d: Data) -> None:
    if dupes.get("train~test", 0) and not d.allow_test_leakage:
        raise KdflowError(f"leakage: {dupes['train~test']} test samples also appear in train "
                          "(set data.allow_test_leakage: true to accept)")


def _manifest(d: Data, h: str, input_shape: list[int], classes: list[str], mean, std, labels: dict, dupes: dict,
              extra: dict) -> dict:
    n_classes = len(classes)
    return {
        "source": d.source, "hash": h, "rev": d.rev, "repo": d.repo,
        "input_shape": input_shape, "num_classes": n_classes,
        "classes": classes, "normalization": {"mean": mean, "std": std},
        "counts": {k: int(len(v)) for k, v in labels.items()},
        "class_counts": {k: np.bincount(v, minlength=n_classes).tolist() for k, v in labels.items() if k != "transfer"},
        "duplicates_across_splits": dupes, **extra,
    }


def _finish(cfg: Params, info: dict, outputs: dict[str, Path], write) -> dict:
    with tracking.stage_run(cfg, "prepare", cfg.data.model_dump(mode="json"), info["hash"]):
        with atomic_dir(outputs["data"]) as tmp:
            write(tmp)
            write_json(tmp / "dataset.json", info)
        tracking.log_metrics({f"count.{k}": v for k, v in info["counts"].items()})
        tracking.set_tags({f"kdflow.data_{k}": str(info[k]) for k in ("rev", "repo", "content_sha256") if info.get(k)})
        tracking.log_artifacts(Path(outputs["data"]) / "dataset.json")
    return {"hash": info["hash"], "counts": info["counts"], "input_shape": info["input_shape"],
            "duplicates": info["duplicates_across_splits"], "format": info.get("format", "memory")}


def _run_memory(cfg: Params, raw: Raw, outputs: dict[str, Path]) -> dict:
    d = cfg.data
    parts = {"pool": (raw.x, raw.y), "test": (raw.x_test, raw.y_test),
             "generated": (raw.x_transfer, None)}
    n_gen = len(raw.x_transfer) if raw.x_transfer is not None and d.transfer_size else 0
    splits = {}
    for name, (part, pos, ids) in plan(raw.y, None if raw.x_test is None else len(raw.y_test), n_gen, d).items():
        x, y = parts[part]
        labels = np.full(len(pos), UNLABELED, np.int64) if name == "transfer" else y[pos]
        splits[name] = {"x": x[pos].astype(np.float32), "y": labels.astype(np.int64), "id": np.asarray(ids, np.int64)}
    labels = {k: v["y"] for k, v in splits.items()}
    _check_labels(labels, len(raw.classes))
    dupes = leakage({k: v["x"] for k, v in splits.items()})
    _check_leakage(dupes, d)
    mean, std = channel_stats(splits["train"]["x"])
    h = hashlib.sha256()
    for arrs in splits.values():
        for k in ("x", "y", "id"):
            h.update(arrs[k].tobytes())
    info = _manifest(d, h.hexdigest(), list(splits["train"]["x"].shape[1:]), raw.classes, mean, std, labels, dupes,
                     {**raw.info, "format": "memory"})

    def write(tmp: Path) -> None:
        for name, arrs in splits.items():
            np.savez(tmp / f"{name}.npz", **arrs)
    return _finish(cfg, info, outputs, write)


def _stream_stats(part, positions: np.ndarray, info: dict) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of the eval view over (at most STATS_SAMPLES of) the train images, two passes."""
    from kdflow.config import ImageViews
    from kdflow.data.images import open_image, view

    views, size = ImageViews(**info["views"]), tuple(info["input_shape"][1:])
    mode = "L" if info["input_shape"][0] == 1 else "RGB"
    rows = part.select(positions[:STATS_SAMPLES].tolist())

    def arrays():
        for batch in rows.iter(batch_size=256):
            for key, data in zip(batch["key"], batch["image"]):
                yield view(open_image(data, mode, key), size, views.eval, views)

    c = info["input_shape"][0]
    total, count = np.zeros(c), 0
    for a in arrays():
        total += a.reshape(c, -1).sum(1, dtype=np.float64)
        count += a[0].size
    mean = total / count
    sq = np.zeros(c)
    for a in arrays():
        sq += ((a.reshape(c, -1).astype(np.float64) - mean[:, None]) ** 2).sum(1)
    std = np.sqrt(sq / count)
    std[std < 1e-8] = 1.0
    return mean.tolist(), std.tolist()


def _run_streaming(cfg: Params, staged, outputs: dict[str, Path]) -> dict:
    from kdflow.data.streaming import FORMAT, write_split

    d = cfg.data
    pool_y = np.asarray(staged.parts["pool"].with_format("numpy")["label"], np.int64)
    test_part = staged.parts.get("test")
    test_y = None if test_part is None else np.asarray(test_part.with_format("numpy")["label"], np.int64)
    splits = plan(pool_y, None if test_y is None else len(test_y), 0, d)
    ys = {"pool": pool_y, "test": test_y}
    labels = {name: (np.full(len(pos), UNLABELED, np.int64) if name == "transfer" else ys[part][pos])
              for name, (part, pos, _) in splits.items()}
    _check_labels(labels, len(staged.classes))
    digests = {name: staged.digests[part][pos] for name, (part, pos, _) in splits.items()}
    names = list(digests)
    dupes = {f"{a}~{b}": len(set(digests[a].tolist()) & set(digests[b].tolist()))
             for i, a in enumerate(names) for b in names[i + 1:]}
    _check_leakage(dupes, d)
    size = list(d.image_size) if d.image_size else list(staged.first_size)
    views = d.views.model_dump(mode="json")
    shape = [1 if d.grayscale else 3, *size]
    partial = {"input_shape": shape, "views": views}
    train_part, train_pos, _ = splits["train"]
    mean, std = _stream_stats(staged.parts[train_part], train_pos, partial)
    h = hashlib.sha256()
    for name in splits:
        h.update(name.encode() + splits[name][2].astype(np.int64).tobytes() + labels[name].tobytes()
                 + digests[name].tobytes())
    extra = {"format": FORMAT, "storage": "Hugging Face datasets save_to_disk (Arrow), images encoded",
             "views": views, "image_size": size, "image_sizes_seen": staged.sizes, "skipped": staged.skipped}
    info = _manifest(d, h.hexdigest(), shape, staged.classes, mean, std, labels, dupes, extra)

    def write(tmp: Path) -> None:
        for name, (part, pos, ids) in splits.items():
            write_split(staged.parts[part], pos, ids, tmp / name, d.shard_mb, unlabeled=name == "transfer")
    return _finish(cfg, info, outputs, write)


def _decoded_mb(staged, d: Data) -> float:
    h, w = d.image_size or staged.first_size
    n = sum(len(p) for p in staged.parts.values())
    return n * (1 if d.grayscale else 3) * h * w * 4 / 2**20


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    from kdflow.data.encoded import is_encoded, raw_from_staged, stage

    d = cfg.data
    if d.text is not None:
        from kdflow.stages.prepare_text import run_text

        return run_text(cfg, outputs)
    if d.repo or not is_encoded(d):
        if d.format == "streaming":
            raise KdflowError(f"data.format streaming needs an encoded-image source (imagefolder:, webdataset:, "
                              f"datasets:, parquet: with an image column), not '{d.source}'"
                              + (" from a DVC repo" if d.repo else ""))
        return _run_memory(cfg, load_source(d), outputs)
    parent = Path(outputs["data"]).parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kdflow-stage-", dir=parent) as work:  # beside the output: same disk
        ticker = Ticker("prepare (read + check images)")
        staged = stage(d, Path(work), ticker.update)
        ticker.finish(f"skipped {staged.skipped['count']}")
        streaming = d.format == "streaming" or (d.format == "auto" and _decoded_mb(staged, d) > d.memory_limit_mb)
        if streaming:
            return _run_streaming(cfg, staged, outputs)
        return _run_memory(cfg, raw_from_staged(staged, d), outputs)
