"""The streaming dataset backend: each split a Hugging Face `datasets` `save_to_disk` directory.

Columns `id` (global sample id), `label` (-1 for transfer), `key` (source path, for error messages)
and `image` (the encoded bytes, never decoded on disk). Arrow shards are memory-mapped, so a
batch is a gather of a few rows whatever the data set's size, and decoding runs in DataLoader
worker processes. The in-memory backend's samplers (`EpochBatches`, `MixedBatches`) drive it
unchanged: the same seed gives the same batches, which is what makes the two backends agree on
small data and a resumed run match an uninterrupted one. docs/data.md says why this format.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kdflow.config import ImageViews
from kdflow.data.images import open_image, sample_rng, view
from kdflow.errors import KdflowError

FORMAT = "streaming"
COLUMNS = ["id", "label", "key", "image"]


def _quiet() -> None:
    import datasets

    datasets.disable_progress_bars()  # kdflow prints its own progress lines
    datasets.logging.set_verbosity_error()


def write_split(part, positions: np.ndarray, ids: np.ndarray, out: Path, shard_mb: int,
                unlabeled: bool = False) -> None:
    """Rows `positions` of a staged part as the split directory `out`, with their global ids."""
    _quiet()
    ds = part.select(positions.tolist()).add_column("id", ids.astype(np.int64).tolist())
    if unlabeled:
        ds = ds.remove_columns("label").add_column("label", [-1] * len(ds))
    ds.select_columns(COLUMNS).save_to_disk(str(out), max_shard_size=f"{shard_mb}MB")


def open_split(data_dir: str | Path, split: str):
    from datasets import load_from_disk

    _quiet()
    path = Path(data_dir) / split
    if not (path / "state.json").is_file():
        raise KdflowError(f"dataset split not found: {path}")
    return load_from_disk(str(path))


def split_ids(data_dir: str | Path, split: str) -> np.ndarray:
    return np.asarray(open_split(data_dir, split).with_format("numpy")["id"], np.int64)


class EncodedBatches(Dataset):
    """Indexed by (epoch, positions): decodes that batch into (x, y, id) with the split's view."""

    def __init__(self, parts: list, info: dict, policy: str, seed: int):
        self.parts = [p.select_columns(COLUMNS) for p in parts]
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.size = tuple(info["input_shape"][1:])
        self.mode = "L" if info["input_shape"][0] == 1 else "RGB"
        self.views = ImageViews(**info["views"])
        self.policy, self.seed = policy, seed

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rows(self, positions: np.ndarray) -> dict[str, list]:
        which = np.searchsorted(self.offsets, positions, side="right") - 1
        out: dict[str, list] = {k: [None] * len(positions) for k in COLUMNS}
        for p in np.unique(which):
            sel = np.flatnonzero(which == p)
            got = self.parts[p][(positions[sel] - self.offsets[p]).tolist()]
            for k in COLUMNS:
                for i, v in zip(sel, got[k]):
                    out[k][i] = v
        return out

    def __getitem__(self, item):
        epoch, idx = item
        r = self.rows(np.asarray(idx))
        random = self.policy == "random_resized_crop"
        x = np.stack([view(open_image(data, self.mode, key), self.size, self.policy, self.views,
                           sample_rng(self.seed, epoch, i) if random else None)
                      for data, key, i in zip(r["image"], r["key"], r["id"])])
        return torch.from_numpy(x), torch.tensor(r["label"], dtype=torch.long), torch.tensor(r["id"], dtype=torch.long)


class Tagged(Sampler):
    """Passes the wrapped batch sampler's epoch along with each batch (workers seed their crops with it)."""

    def __init__(self, sampler: Sampler):
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        epoch = getattr(self.sampler, "epoch", 0)
        for idx in self.sampler:
            yield epoch, idx

    def __len__(self) -> int:
        return len(self.sampler)


def workers(num_workers: int) -> int:
    """Streaming data decodes in worker processes: `train.num_workers`, or 2 when that is 0."""
    return num_workers or min(2, os.cpu_count() or 1)


def encoded_loader(ds: EncodedBatches, sampler: Sampler, num_workers: int, persistent: bool = True) -> DataLoader:
    n = workers(num_workers)
    return DataLoader(ds, sampler=Tagged(sampler), batch_size=None, num_workers=n,
                      persistent_workers=persistent and n > 0, generator=torch.Generator().manual_seed(0),
                      prefetch_factor=4 if n else None)


class Rows(Sampler):
    """Consecutive index batches over rows a..b."""

    def __init__(self, a: int, b: int, batch_size: int):
        self.a, self.b, self.batch_size = a, b, batch_size

    def __iter__(self):
        for i in range(self.a, self.b, self.batch_size):
            yield torch.arange(i, min(i + self.batch_size, self.b))

    def __len__(self) -> int:
        return -(-(self.b - self.a) // self.batch_size)


def iter_split(data_dir: str | Path, split: str, info: dict, batch_size: int, num_workers: int = 0,
               rows: tuple[int, int] | None = None):
    """(x, y, id) batches of one split (rows a..b) in stored order, eval view: soft targets, evaluation."""
    ds = EncodedBatches([open_split(data_dir, split)], info, info["views"]["eval"], 0)
    a, b = rows or (0, len(ds))
    b = min(b, len(ds))
    yield from encoded_loader(ds, Rows(a, b, batch_size), num_workers, persistent=False)


def decode_split(data_dir: str | Path, split: str, info: dict) -> dict[str, np.ndarray]:
    """A whole split decoded (eval view) as in-memory arrays: `load_split` for small splits."""
    xs, ys, ids = [], [], []
    for x, y, i in iter_split(data_dir, split, info, 512):
        xs.append(x.numpy()), ys.append(y.numpy()), ids.append(i.numpy())
    return {"x": np.concatenate(xs), "y": np.concatenate(ys), "id": np.concatenate(ids)}
