"""Data sources: built-in (digits, mnist1d) and bring-your-own (an MNIST-layout idx directory, npz, idx, parquet,
csv; encoded images from imagefolder, webdataset, datasets, parquet through `kdflow.data.encoded`).

Every loader returns a `Raw`: float32 inputs shaped (N, C, ...) or (N, F), int64 labels, class
names, and optionally a predefined test split and a generated transfer pool. The schemes, their kinds
and paths are declared in `kdflow.names.data_sources`; `MEMORY` holds the loader of each `memory` scheme.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdflow.config import Data
from kdflow.data.encoded import is_encoded, load_encoded
from kdflow.data.raw import Raw
from kdflow.data.versioned import load_versioned
from kdflow.errors import KdflowError
from kdflow.names.data_sources import describe, lookup

__all__ = ["MEMORY", "Raw", "load_source"]


def _mnist1d(cfg: Data, num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # make_dataset generates from templates with a seed; its downloader is never touched.
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, 1.0
    d = make_dataset(args)
    return d["x"].astype(np.float32)[:, None, :], d["y"].astype(np.int64)


def load_mnist1d(cfg: Data) -> Raw:
    x, y = _mnist1d(cfg, cfg.num_samples, cfg.seed)
    xt = None
    if cfg.transfer_size:
        # a different generator seed: fresh samples from the same distribution, labels dropped
        xt, _ = _mnist1d(cfg, max(cfg.transfer_size, 10), cfg.seed + 1_000_003)
        xt = xt[: cfg.transfer_size]
    return Raw(x, y, [str(i) for i in range(10)], x_transfer=xt, info={"generator": "mnist1d.make_dataset"})


def load_digits() -> Raw:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return Raw(d.images.astype(np.float32)[:, None] / 16.0, d.target.astype(np.int64),
               [str(c) for c in d.target_names])


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            buf = f.read()
    except OSError as exc:
        raise KdflowError(f"cannot read IDX file {path}: {exc}") from None
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08:
        raise KdflowError(f"{path} is not an unsigned-byte IDX file (bad magic)")
    ndim = buf[3]
    dims = np.frombuffer(buf, ">i4", ndim, 4)
    data = np.frombuffer(buf, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise KdflowError(f"{path}: IDX header says {tuple(dims)} but holds {data.size} bytes")
    return data.reshape(dims)


def load_idx(spec: str) -> Raw:
    images, sep, labels = spec.partition(",")
    if not sep:
        raise KdflowError(f"idx source needs 'idx:<images>,<labels>', got 'idx:{spec}'")
    x, y = _read_idx(_exists(images)), _read_idx(_exists(labels))
    if len(x) != len(y):
        raise KdflowError(f"idx: {len(x)} images but {len(y)} labels")
    x = x.astype(np.float32) / 255.0
    return Raw(x[:, None] if x.ndim == 3 else x, y.astype(np.int64), _class_names(y))


MNIST_FILES = {"x": "train-images-idx3-ubyte", "y": "train-labels-idx1-ubyte",
               "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def load_mnist_dir(directory: str) -> Raw:
    """A directory in MNIST's layout (also Fashion-/KMNIST): the four idx files, gzipped or not. Their
    official test split becomes the test split, so `data.test_size` is unused."""
    root = _exists(directory)
    arrays = {}
    for key, stem in MNIST_FILES.items():
        found = [root / f"{stem}{ext}" for ext in (".gz", "") if (root / f"{stem}{ext}").is_file()]
        if not found:
            raise KdflowError(f"mnist:{directory}: missing {stem}[.gz] (needs {sorted(MNIST_FILES.values())})")
        arrays[key] = _read_idx(found[0])
    for split in ("", "_test"):
        if len(arrays[f"x{split}"]) != len(arrays[f"y{split}"]):
            raise KdflowError(f"mnist:{directory}: {len(arrays[f'x{split}'])} images but "
                              f"{len(arrays[f'y{split}'])} labels in the {split[1:] or 'train'} files")
    x, xt = (arrays[k].astype(np.float32)[:, None] / 255.0 for k in ("x", "x_test"))
    y, yt = arrays["y"].astype(np.int64), arrays["y_test"].astype(np.int64)
    return Raw(x, y, _class_names(np.concatenate([y, yt])), x_test=xt, y_test=yt, info={"test_split": "official"})


def load_npz(path: str) -> Raw:
    with np.load(_exists(path), allow_pickle=False) as d:
        missing = {"x", "y"} - set(d.files)
        if missing:
            raise KdflowError(f"npz {path} lacks arrays {sorted(missing)} (has {d.files})")
        x, y = d["x"].astype(np.float32), d["y"]
    return Raw(x, _labels(y, path), _class_names(y))


def load_table(kind: str, path: str, label_column: str) -> Raw:
    import pandas as pd

    p = _exists(path)
    df = pd.read_parquet(p) if kind == "parquet" else pd.read_csv(p)
    if label_column not in df.columns:
        raise KdflowError(f"{kind} {path}: label column '{label_column}' not found; columns: {list(df.columns)}")
    y = df.pop(label_column).to_numpy()
    non_numeric = [c for c in df.columns if not np.issubdtype(df[c].dtype, np.number)]
    if non_numeric:
        raise KdflowError(f"{kind} {path}: feature columns must be numeric, not {non_numeric}")
    classes = sorted({str(v) for v in y})
    index = {c: i for i, c in enumerate(classes)}
    return Raw(df.to_numpy(np.float32), np.array([index[str(v)] for v in y], np.int64), classes,
               info={"features": list(df.columns)})


MEMORY: dict[str, Callable[[str, Data], Raw]] = {
    "mnist1d": lambda arg, cfg: load_mnist1d(cfg),
    "digits": lambda arg, cfg: load_digits(),
    "idx": lambda arg, cfg: load_idx(arg),
    "mnist": lambda arg, cfg: load_mnist_dir(arg),
    "npz": lambda arg, cfg: load_npz(arg),
    "csv": lambda arg, cfg: load_table("csv", arg, cfg.label_column),
    "parquet": lambda arg, cfg: load_table("parquet", arg, cfg.label_column),
}


def load_source(cfg: Data) -> Raw:
    if cfg.repo:  # DVC-tracked: fetch the path at data.rev, then load the local copy
        return load_versioned(cfg, load_source)
    source, arg = lookup(cfg.source)
    if source is None:
        raise KdflowError(f"unknown data.source '{cfg.source}'; allowed: {describe()}")
    if "encoded" in source.kinds and is_encoded(cfg):
        raw = load_encoded(cfg)
    elif "memory" in source.kinds:
        raw = MEMORY[source.scheme](arg, cfg)
    else:
        raise KdflowError(f"data.source '{cfg.source}' is a {' or '.join(source.kinds)} source: "
                          + ("set data.text (docs/text.md)" if "text" in source.kinds else "it has no in-memory form"))
    for name, arr in (("inputs", raw.x), ("test inputs", raw.x_test), ("transfer inputs", raw.x_transfer)):
        if arr is not None and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).any(axis=tuple(range(1, arr.ndim))).sum())
            raise KdflowError(f"data source {cfg.source}: {bad} samples of {name} contain NaN or inf")
    return raw


def _exists(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise KdflowError(f"data path not found: {path}")
    return p


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer):
        raise KdflowError(f"{where}: labels must be integers 0..K-1, got dtype {y.dtype}")
    if y.min() < 0:
        raise KdflowError(f"{where}: label {int(y.min())} out of range (labels must be 0..K-1)")
    return y.astype(np.int64)


def _class_names(y: np.ndarray) -> list[str]:
    return [str(i) for i in range(int(y.max()) + 1)]
