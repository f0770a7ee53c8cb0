"""Reading a prepared dataset and serving (x, y, id) batches to Lightning.

Batches are gathered by index from in-memory tensors (one fancy-index per batch, no per-sample
collate), which keeps the loader far below the cost of a student's step. The sampler reseeds
per epoch, so a run resumed from a checkpoint sees the same batches as an uninterrupted one.
Transfer samples carry label -1.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from kdflow.errors import KdflowError
from kdflow.io import read_json, require_dir

SPLITS = ("train", "val", "test", "transfer")
UNLABELED = -1


def load_split(data_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise KdflowError(f"dataset split not found: {path}")
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in ("x", "y", "id")}


def load_info(data_dir: str | Path) -> dict:
    return read_json(require_dir(data_dir, "dataset", "dataset.json") / "dataset.json", "dataset manifest")


class TensorBatches(Dataset):
    """Indexed by a whole list of positions: returns the batch (x, y, id) at once."""

    def __init__(self, parts: list[dict[str, np.ndarray]]):
        self.x = torch.from_numpy(np.concatenate([p["x"] for p in parts])).float()
        self.y = torch.from_numpy(np.concatenate([p["y"] for p in parts])).long()
        self.id = torch.from_numpy(np.concatenate([p["id"] for p in parts])).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx):
        return self.x[idx], self.y[idx], self.id[idx]


class EpochBatches(Sampler):
    """Yields index batches; shuffled with a (seed, epoch) generator; sharded across DDP ranks."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, drop_last: bool = False):
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            world, rank = dist.get_world_size(), dist.get_rank()
            per = self.n // world  # equal share per rank so every rank runs the same number of steps
            order = order[rank * per:(rank + 1) * per] if self.shuffle else order[rank::world][:per]
        return order

    def __iter__(self):
        order = self._indices()
        stop = len(order) - (len(order) % self.batch_size if self.drop_last else 0)
        for i in range(0, stop, self.batch_size):
            yield order[i:i + self.batch_size]

    def __len__(self) -> int:
        m = len(self._indices())
        return m // self.batch_size if self.drop_last else -(-m // self.batch_size)


def loader(parts: list[dict[str, np.ndarray]], batch_size: int, shuffle: bool, seed: int = 0,
           num_workers: int = 0) -> DataLoader:
    ds = TensorBatches(parts)
    sampler = EpochBatches(len(ds), batch_size, shuffle, seed, drop_last=shuffle and len(ds) > batch_size)
    return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0)


class KDDataModule(L.LightningDataModule):
    """train (+ transfer when `with_transfer`) for fitting; val for selection; test for evaluation."""

    def __init__(self, data_dir: str | Path, batch_size: int, seed: int = 0, with_transfer: bool = False,
                 num_workers: int = 0, eval_batch_size: int = 1024):
        super().__init__()
        self.data_dir, self.batch_size, self.seed = Path(data_dir), batch_size, seed
        self.with_transfer, self.num_workers, self.eval_batch_size = with_transfer, num_workers, eval_batch_size
        self.info = load_info(self.data_dir)

    def split(self, name: str) -> dict[str, np.ndarray]:
        return load_split(self.data_dir, name)

    def has(self, name: str) -> bool:
        return (self.data_dir / f"{name}.npz").is_file()

    def train_dataloader(self) -> DataLoader:
        parts = [self.split("train")]
        if self.with_transfer and self.has("transfer"):
            parts.append(self.split("transfer"))
        return loader(parts, self.batch_size, True, self.seed, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return loader([self.split("val")], self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return loader([self.split("test")], self.eval_batch_size, False)
