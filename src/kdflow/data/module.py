"""Reading a prepared dataset and serving (x, y, id) batches to Lightning.

Batches are gathered by index from in-memory tensors (one fancy-index per batch, no per-sample
collate), which keeps the loader far below the cost of a student's step. The sampler reseeds
per epoch, so a run resumed from a checkpoint sees the same batches as an uninterrupted one.
Transfer samples carry label -1.

Small in-memory batches travel in groups: one loader item holds up to `MAX_GROUP` consecutive batches
and the module takes one optimizer step per batch in it (`ClassifierModule.training_step`). Lightning's
per-item work (fetch, hooks, callbacks: ~0.7 ms on CPU) then runs once per group, not once per step,
which is 5-10 % of a small model's step; the steps, their batches and their order are unchanged.
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
MAX_GROUP = 8  # batches per loader item: past 8 the saved per-item cost is < 0.1 ms a step
GROUP_BYTES = 4 << 20  # a group's inputs stay within a few MB (small images and vectors, not 224² crops)


def is_streaming(info: dict) -> bool:
    return info.get("format") == "streaming"


def has_split(data_dir: str | Path, split: str) -> bool:
    return (Path(data_dir) / f"{split}.npz").is_file() or (Path(data_dir) / split / "state.json").is_file()


def split_ids(data_dir: str | Path, split: str) -> np.ndarray:
    """A split's sample ids without reading its inputs."""
    if (Path(data_dir) / split / "state.json").is_file():
        from kdflow.data.streaming import split_ids as stream_ids

        return stream_ids(data_dir, split)
    with np.load(Path(data_dir) / f"{split}.npz", allow_pickle=False) as d:
        return d["id"]


def load_split(data_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    """A whole split in memory (x, y, id); a streaming split is decoded with its eval view."""
    if (Path(data_dir) / split / "state.json").is_file():
        from kdflow.data.streaming import decode_split

        return decode_split(data_dir, split, load_info(data_dir))
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise KdflowError(f"dataset split not found: {path}")
    with np.load(path, allow_pickle=False) as d:
        if "tokens" in d.files:  # text: ragged token ids, padded to the split's longest sample here
            from kdflow.data.tokenized import padded_split

            return padded_split(data_dir, split, load_info(data_dir)["tokenizer"]["pad_id"])
        return {k: d[k] for k in ("x", "y", "id")}


def load_info(data_dir: str | Path) -> dict:
    return read_json(require_dir(data_dir, "dataset", "dataset.json") / "dataset.json", "dataset manifest")


class TensorBatches(Dataset):
    """Indexed by a whole list of positions: returns the batch (x, y, id) at once."""

    def __init__(self, parts: list[dict[str, np.ndarray]]):
        # one part is used as loaded (no copy: the train split of MNIST is 170 MB of float32)
        cat = lambda k: parts[0][k] if len(parts) == 1 else np.concatenate([p[k] for p in parts])  # noqa: E731
        self.x = torch.from_numpy(cat("x")).float()
        self.y = torch.from_numpy(cat("y")).long()
        self.id = torch.from_numpy(cat("id")).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx):
        return self.x[idx], self.y[idx], self.id[idx]


class EpochBatches(Sampler):
    """Yields index batches, `group` consecutive batches per item; shuffled with a (seed, epoch) generator;
    sharded across DDP ranks."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, drop_last: bool = False,
                 group: int = 1):
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.group = group
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
        step = self.batch_size * self.group
        for i in range(0, stop, step):
            yield order[i:min(i + step, stop)]

    @property
    def batches(self) -> int:
        """Batches (optimizer steps) per epoch; `len` counts the loader's items (groups)."""
        m = len(self._indices())
        return m // self.batch_size if self.drop_last else -(-m // self.batch_size)

    def __len__(self) -> int:
        return -(-self.batches // self.group)


def group_size(batch_size: int, sample_bytes: int, world_size: int = 1) -> int:
    """Batches per loader item for in-memory training: as many as fit `GROUP_BYTES`, up to `MAX_GROUP`. One
    under DDP: its gradient sync is armed once per module call, i.e. for one backward per item."""
    if world_size > 1:
        return 1
    return max(1, min(MAX_GROUP, GROUP_BYTES // max(batch_size * sample_bytes, 1)))


class MixedBatches(Sampler):
    """Batches with a fixed labeled share: k = round(f·B) labeled + B-k transfer samples each.

    Positions 0..n_labeled-1 are labeled, the rest transfer (the `TensorBatches` order). Each
    stream is drawn from fresh per-(seed, epoch) permutations, cycled as often as needed, so the
    smaller (labeled) set is oversampled. An epoch has as many batches as one pass over
    labeled + transfer would, so an epoch costs the same as without mixing. DDP ranks draw
    disjoint-seeded streams and run equal step counts.
    """

    def __init__(self, n_labeled: int, n_transfer: int, batch_size: int, labeled_fraction: float, seed: int):
        if n_labeled < 1 or n_transfer < 1 or batch_size < 2:
            raise KdflowError("labeled_fraction needs labeled and transfer samples and a batch size >= 2")
        self.n_labeled, self.n_transfer, self.batch_size, self.seed = n_labeled, n_transfer, batch_size, seed
        self.k = min(max(round(labeled_fraction * batch_size), 1), batch_size - 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _world(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def __len__(self) -> int:
        return max((self.n_labeled + self.n_transfer) // self.batch_size // self._world()[0], 1)

    @staticmethod
    def _stream(n: int, count: int, g: torch.Generator) -> torch.Tensor:
        reps = -(-count // n)
        return torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[:count]

    def __iter__(self):
        world, rank = self._world()
        g = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) * 1_009 + rank)
        steps = len(self)
        lab = self._stream(self.n_labeled, steps * self.k, g).view(steps, self.k)
        unl = self._stream(self.n_transfer, steps * (self.batch_size - self.k), g).view(steps, -1) + self.n_labeled
        for i in range(steps):
            yield torch.cat([lab[i], unl[i]])


def batches(ds: TensorBatches, sampler: Sampler, num_workers: int = 0) -> DataLoader:
    # A private generator: a DataLoader without one draws its workers' base seed from the global RNG each
    # time an iterator starts, and a resumed run starts its first iterator at a different point of the
    # per-epoch reseed than an uninterrupted one, which would shift every later dropout/augment draw.
    return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0))


def loader(parts: list[dict[str, np.ndarray]], batch_size: int, shuffle: bool, seed: int = 0,
           num_workers: int = 0) -> DataLoader:
    ds = TensorBatches(parts)
    sampler = EpochBatches(len(ds), batch_size, shuffle, seed, drop_last=shuffle and len(ds) > batch_size)
    return batches(ds, sampler, num_workers)


class KDDataModule(L.LightningDataModule):
    """train (+ transfer when `with_transfer`) for fitting; val for selection; test for evaluation."""

    def __init__(self, data_dir: str | Path, batch_size: int, seed: int = 0, with_transfer: bool = False,
                 num_workers: int = 0, eval_batch_size: int = 1024, labeled_fraction: float | None = None):
        super().__init__()
        self.data_dir, self.batch_size, self.seed = Path(data_dir), batch_size, seed
        self.with_transfer, self.num_workers, self.eval_batch_size = with_transfer, num_workers, eval_batch_size
        self.labeled_fraction = labeled_fraction  # share of labeled samples per batch when transfer is used
        self.info = load_info(self.data_dir)

    def split(self, name: str) -> dict[str, np.ndarray]:
        return load_split(self.data_dir, name)

    def has(self, name: str) -> bool:
        return has_split(self.data_dir, name)

    def _train_policy(self) -> str:
        # Cached teacher logits were computed on the eval view: a student joined to them by id must see
        # that view too; everything else trains on the (random) train view.
        lm = self.trainer.lightning_module if self.trainer is not None else None
        offline = getattr(lm, "table", None) is not None
        return self.info["views"]["eval" if offline else "train"]

    def _dataset(self, names: list[str], train: bool):
        if is_streaming(self.info):
            from kdflow.data.streaming import EncodedBatches, open_split

            policy = self._train_policy() if train else self.info["views"]["eval"]
            return EncodedBatches([open_split(self.data_dir, n) for n in names], self.info, policy, self.seed)
        if self.info.get("modality") == "text":  # ragged token ids, padded per batch
            from kdflow.data.tokenized import TokenBatches, read_split

            return TokenBatches([read_split(self.data_dir, n) for n in names], self.info["tokenizer"]["pad_id"])
        return TensorBatches([self.split(n) for n in names])

    def _loader(self, ds, sampler: Sampler, train: bool) -> DataLoader:
        if is_streaming(self.info):
            from kdflow.data.streaming import encoded_loader

            return encoded_loader(ds, sampler, self.num_workers)
        return batches(ds, sampler, self.num_workers if train else 0)

    def train_dataloader(self) -> DataLoader:
        names = ["train"] + (["transfer"] if self.with_transfer and self.has("transfer") else [])
        ds = self._dataset(names, train=True)
        if len(names) == 2 and self.labeled_fraction is not None:
            n_lab = len(split_ids(self.data_dir, "train"))
            sampler = MixedBatches(n_lab, len(ds) - n_lab, self.batch_size, self.labeled_fraction, self.seed)
        else:
            group = 1
            if isinstance(ds, TensorBatches):  # text (padded per batch) and streamed batches stay one per item
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
