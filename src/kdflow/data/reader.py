"""The prepared-dataset reader: one object opened from a `dataset/` directory, whatever its layout.

`prepare` decides once how a dataset is stored — small arrays in memory (`.npz` with x, y, id), ragged
token ids (`.npz` with tokens, offsets), or encoded images in streaming Arrow splits — and records it in
`dataset.json`. Every later stage opens the directory with `open_dataset` and asks the reader for split ids,
inference batches or a training dataset, instead of re-deriving the layout from file names and manifest keys.
A new layout is one `Layout` subclass registered under its `dataset.json` layout name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kdflow import tasks
from kdflow.data import streaming, tokenized
from kdflow.errors import KdflowError
from kdflow.io import read_json, require_dir

SPLITS = ("train", "val", "test", "transfer")
UNLABELED = -1  # the label of transfer samples: they take only the KD term


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


def batches(ds: Dataset, sampler: Sampler, num_workers: int = 0) -> DataLoader:
    # A private generator: a DataLoader without one draws its workers' base seed from the global RNG each
    # time an iterator starts, and a resumed run starts its first iterator at a different point of the
    # per-epoch reseed than an uninterrupted one, which would shift every later dropout/augment draw.
    return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0))


class Layout(ABC):
    """How one dataset's splits are stored. Subclasses answer for one `dataset.json` layout."""

    name: ClassVar[str]
    groupable: ClassVar[bool] = False  # loader items may carry several small batches (EpochBatches group)

    def __init__(self, root: Path, info: dict):
        self.root, self.info = root, info

    def has(self, split: str) -> bool:
        return (self.root / f"{split}.npz").is_file()

    def ids(self, split: str) -> np.ndarray:
        with np.load(self._npz(split), allow_pickle=False) as d:
            return d["id"]

    def _npz(self, split: str) -> Path:
        path = self.root / f"{split}.npz"
        if not path.is_file():
            raise KdflowError(f"dataset split not found: {path}")
        return path

    @abstractmethod
    def arrays(self, split: str) -> dict[str, np.ndarray]:
        """A whole split in memory (x, y, id), eval view."""

    @abstractmethod
    def dataset(self, splits: list[str], policy: str, seed: int) -> Dataset:
        """The concatenated splits as a Dataset indexed by a list of positions (one batch per item)."""

    def loader(self, ds: Dataset, sampler: Sampler, num_workers: int) -> DataLoader:
        return batches(ds, sampler, num_workers)

    def batches(self, splits: list[str], batch_size: int, lo: int = 0, hi: int | None = None,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        """(x, y, ids) over samples lo..hi of the concatenated splits, eval view, for inference. The order is
        the layout's choice (outputs are keyed by id)."""
        parts = [self.arrays(s) for s in splits]
        x = np.concatenate([p["x"] for p in parts])[lo:hi]
        y = np.concatenate([p["y"] for p in parts])[lo:hi]
        ids = np.concatenate([p["id"] for p in parts])[lo:hi]
        for i in range(0, len(ids), batch_size):
            yield torch.from_numpy(x[i:i + batch_size]), torch.from_numpy(y[i:i + batch_size]), ids[i:i + batch_size]


LAYOUTS: dict[str, type[Layout]] = {}


def register_layout(cls: type[Layout]) -> type[Layout]:
    LAYOUTS[cls.name] = cls
    return cls


@register_layout
class Arrays(Layout):
    """Small data in memory: `<split>.npz` with x, y, id."""

    name = "arrays"
    groupable = True

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        with np.load(self._npz(split), allow_pickle=False) as d:
            return {k: d[k] for k in ("x", "y", "id")}

    def dataset(self, splits: list[str], policy: str, seed: int) -> Dataset:
        return TensorBatches([self.arrays(s) for s in splits])


@register_layout
class Tokens(Layout):
    """Text: ragged token ids (`tokens`, `offsets`) per split, padded per batch to its longest sample."""

    name = "tokens"

    @property
    def pad_id(self) -> int:
        return self.info["tokenizer"]["pad_id"]

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        return tokenized.padded_split(self.root, split, self.pad_id)

    def dataset(self, splits: list[str], policy: str, seed: int) -> Dataset:
        return tokenized.TokenBatches([tokenized.read_split(self.root, s) for s in splits], self.pad_id)

    def batches(self, splits, batch_size, lo=0, hi=None):
        # Batches of similar length (outputs are keyed by id, so order is free): SST-2-like data mixes 3-token
        # phrases with 60-token sentences, and padding each batch to its longest would cost the teacher ~3×.
        ds = self.dataset(splits, "eval", 0)
        rows = np.arange(lo, len(ds) if hi is None else min(hi, len(ds)))
        rows = rows[np.argsort(np.diff(ds.offsets)[rows], kind="stable")]
        for i in range(0, len(rows), batch_size):
            x, y, ids = ds[torch.from_numpy(rows[i:i + batch_size])]
            yield x, y, ids.numpy()


@register_layout
class Streaming(Layout):
    """Large image sets: encoded images in streaming Arrow splits, decoded in loader workers."""

    name = "streaming"

    def has(self, split: str) -> bool:
        return (self.root / split / "state.json").is_file()

    def ids(self, split: str) -> np.ndarray:
        return streaming.split_ids(self.root, split)

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        return streaming.decode_split(self.root, split, self.info)

    def dataset(self, splits: list[str], policy: str, seed: int) -> Dataset:
        return streaming.EncodedBatches([streaming.open_split(self.root, n) for n in splits], self.info, policy, seed)

    def loader(self, ds: Dataset, sampler: Sampler, num_workers: int) -> DataLoader:
        return streaming.encoded_loader(ds, sampler, num_workers)

    def batches(self, splits, batch_size, lo=0, hi=None):
        start = 0
        for s in splits:
            n = len(self.ids(s))
            a, b = max(lo - start, 0), n if hi is None else min(hi - start, n)
            if a < b:
                for x, y, ids in streaming.iter_split(self.root, s, self.info, batch_size, rows=(a, b)):
                    yield x, y, ids.numpy()
            start += n


def layout_name(info: dict) -> str:
    """The layout of a dataset.json: its `layout` key, or (datasets prepared before it existed) derived."""
    if "layout" in info:
        return info["layout"]
    if info.get("format") == "streaming":
        return "streaming"
    return "tokens" if info.get("modality") == "text" else "arrays"


class Reader:
    """A prepared dataset: its manifest, its task, and its splits through the layout that stored them."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.info = load_info(self.root)
        name = layout_name(self.info)
        if name not in LAYOUTS:
            raise KdflowError(f"dataset {self.root}: unknown layout '{name}'; layouts: {', '.join(LAYOUTS)}")
        self.layout = LAYOUTS[name](self.root, self.info)

    @property
    def task(self) -> tasks.Task:
        return tasks.get(self.info.get("task", "classification"))

    @property
    def streaming(self) -> bool:
        return self.layout.name == "streaming"

    def has(self, split: str) -> bool:
        return self.layout.has(split)

    def ids(self, split: str) -> np.ndarray:
        return self.layout.ids(split)

    def count(self, splits: list[str]) -> int:
        return sum(len(self.ids(s)) for s in splits)

    def present(self, splits) -> list[str]:
        return [s for s in splits if self.has(s)]

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        return self.layout.arrays(split)

    def batches(self, splits: list[str], batch_size: int, lo: int = 0, hi: int | None = None):
        return self.layout.batches(splits, batch_size, lo, hi)

    def dataset(self, splits: list[str], policy: str = "eval", seed: int = 0) -> Dataset:
        return self.layout.dataset(splits, policy, seed)

    def loader(self, ds: Dataset, sampler: Sampler, num_workers: int = 0) -> DataLoader:
        return self.layout.loader(ds, sampler, num_workers)


def open_dataset(root: str | Path) -> Reader:
    return Reader(root)


def for_student(data_dir: str | Path) -> Path:
    """The dataset a student's stages read: the student tokenization (`student/`) when prepare wrote one."""
    view = load_info(data_dir).get("student_view")
    return Path(data_dir) / view if view else Path(data_dir)


# Single-question shorthands (tests, benchmarks and stages that need one fact of a dataset)
def has_split(data_dir: str | Path, split: str) -> bool:
    return open_dataset(data_dir).has(split)


def split_ids(data_dir: str | Path, split: str) -> np.ndarray:
    """A split's sample ids without reading its inputs."""
    return open_dataset(data_dir).ids(split)


def load_split(data_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    """A whole split in memory (x, y, id); streaming splits decoded and token ids padded, eval view."""
    return open_dataset(data_dir).arrays(split)
