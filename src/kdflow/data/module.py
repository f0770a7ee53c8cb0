"""The LightningDataModule: a prepared dataset's splits as Lightning's train/val/test loaders.

What the splits hold and how they are stored is the reader's (`kdflow.data.reader`); which samples make each
batch is the samplers' (`kdflow.data.samplers`). Transfer samples carry label -1.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Sampler

from kdflow.data.buckets import LengthBuckets
from kdflow.data.reader import open_dataset
from kdflow.data.samplers import EpochBatches, MixedBatches, group_size


class KDDataModule(L.LightningDataModule):
    """train (+ transfer when `with_transfer`) for fitting; val for selection; test for evaluation."""

    def __init__(self, data_dir: str | Path, batch_size: int, seed: int = 0, with_transfer: bool = False,
                 num_workers: int = 0, eval_batch_size: int = 1024, labeled_fraction: float | None = None):
        super().__init__()
        self.data_dir, self.batch_size, self.seed = Path(data_dir), batch_size, seed
        self.with_transfer, self.num_workers, self.eval_batch_size = with_transfer, num_workers, eval_batch_size
        self.labeled_fraction = labeled_fraction  # share of labeled samples per batch when transfer is used
        self.reader = open_dataset(self.data_dir)
        self.info = self.reader.info

    def split(self, name: str) -> dict[str, np.ndarray]:
        return self.reader.arrays(name)

    def has(self, name: str) -> bool:
        return self.reader.has(name)

    def _train_policy(self) -> str:
        # Cached teacher logits were computed on the eval view: a student joined to them by id must see
        # that view too; everything else trains on the (random) train view.
        lm = self.trainer.lightning_module if self.trainer is not None else None
        offline = getattr(lm, "table", None) is not None
        return self.info["views"]["eval" if offline else "train"]

    def _dataset(self, names: list[str], train: bool):
        views = self.info.get("views")  # image views (streaming); other layouts have one view
        policy = (self._train_policy() if train else views["eval"]) if views else "eval"
        return self.reader.dataset(names, policy, self.seed)

    def _loader(self, ds, sampler: Sampler, train: bool) -> DataLoader:
        # in-memory evaluation batches are one index away: workers would only add start-up time
        return self.reader.loader(ds, sampler, self.num_workers if train or self.reader.streaming else 0)

    def train_dataloader(self) -> DataLoader:
        names = ["train"] + (["transfer"] if self.with_transfer and self.has("transfer") else [])
        ds = self._dataset(names, train=True)
        if len(names) == 2 and self.labeled_fraction is not None:
            n_lab = len(self.reader.ids("train"))
            sampler = MixedBatches(n_lab, len(ds) - n_lab, self.batch_size, self.labeled_fraction, self.seed)
        elif self.reader.layout.name == "tokens":  # samples of similar length per batch: less padding
            sampler = LengthBuckets(np.diff(ds.offsets), self.batch_size, self.seed,
                                    drop_last=len(ds) > self.batch_size)
        else:
            group = 1
            if self.reader.layout.groupable:  # text (padded per batch) and streamed batches stay one per item
                world = self.trainer.world_size if self.trainer is not None else 1
                group = group_size(self.batch_size, ds.x[:1].numel() * ds.x.element_size(), world)
            sampler = EpochBatches(len(ds), self.batch_size, True, self.seed, drop_last=len(ds) > self.batch_size,
                                   group=group)
        return self._loader(ds, sampler, train=True)

    def _eval_loader(self, name: str) -> DataLoader:
        ds = self._dataset([name], train=False)
        return self._loader(ds, EpochBatches(len(ds), self.eval_batch_size, False, 0), train=False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
