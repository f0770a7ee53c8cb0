"""Encoded-image sources, read lazily through fsspec (local paths, file://, memory://, s3://, gs://).

- `imagefolder:<dir>`: `<class>/<image>` (or `train/` + `test/` holding that layout);
- `webdataset:<dir|tar|glob>`: WebDataset tar shards (`<key>.jpg|png|...` + `<key>.cls` or `<key>.json`
  with a `label`), read with the standard library's streaming tar reader;
- `datasets:<dir>`: a Hugging Face `save_to_disk` directory (a Dataset, or a DatasetDict with `train`
  and optionally `test`); the image column may be an `Image` feature or raw bytes;
- `parquet:<file|dir>` with an image-bytes column (`data.image_column`, bytes or `{bytes, path}`).

`stage` copies one source into a local Arrow file (`key`, `label`, `image` bytes) in one pass, checking
every image (decode or header) and applying the bad-sample policy. Nothing is decoded into memory:
prepare splits the staged table by its label column and writes the splits from it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdflow.config import Data
from kdflow.data.images import IMAGE_EXTS, open_image
from kdflow.data.raw import Raw
from kdflow.errors import KdflowError
from kdflow.names.data_sources import schemes

KINDS = schemes("encoded")
FEATURES = {"key": "string", "label": "int64", "image": "binary"}
BATCH = 256


def is_encoded(cfg: Data) -> bool:
    kind, _, arg = cfg.source.partition(":")
    if kind == "parquet":  # a numeric feature table stays the in-memory table source
        return _parquet_has_images(arg, cfg)
    return kind in KINDS


def _fs(url: str, cfg: Data):
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **cfg.storage_options)
    except (ImportError, ValueError) as exc:
        raise KdflowError(f"cannot open {url}: {exc}") from None
    if not fs.exists(path):
        raise KdflowError(f"data path not found: {url}")
    return fs, path


def _url(fs, path: str) -> str:
    return fs.unstrip_protocol(path) if fs.protocol not in ("file", ("file", "local")) else path


# ---------------------------------------------------------------- readers: (key, label, bytes) per sample

def _imagefolder(root: str, cfg: Data) -> tuple[list[str], dict[str, Iterator]]:
    fs, base = _fs(root, cfg)
    split_dirs = [posixpath.join(base, p) for p in ("train", "test")]
    parts = split_dirs if fs.isdir(split_dirs[0]) else [base]
    classes = sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(parts[0], detail=False) if fs.isdir(p))
    if not classes:
        raise KdflowError(f"imagefolder {root}: no class subfolders found")

    def files(part: str) -> list[tuple[str, int]]:
        out = []
        for ci, c in enumerate(classes):
            d = posixpath.join(part, c)
            found = sorted(f for f in fs.find(d) if f.lower().endswith(IMAGE_EXTS)) if fs.isdir(d) else []
            out += [(f, ci) for f in found]
        if not out:
            raise KdflowError(f"imagefolder: no images under {_url(fs, part)}")
        return out

    def read(listing):
        for f, ci in listing:
            yield _url(fs, f), ci, fs.cat_file(f)

    listings = {name: files(p) for name, p in zip(("pool", "test"), parts)}
    return classes, {name: read(lst) for name, lst in listings.items()}


def _tar_samples(fs, tar_path: str) -> Iterator[tuple[str, int, bytes]]:
    """WebDataset convention: members sharing a key (path up to the basename's first dot) form a sample."""
    def emit(key, members):
        img = next((members[e] for e in ("jpg", "jpeg", "png", "webp", "bmp") if e in members), None)
        if img is None:
            raise KdflowError(f"webdataset {_url(fs, tar_path)}: sample {key} has no image member")
        if "cls" in members:
            label = members["cls"].decode().strip()
        elif "json" in members:
            label = json.loads(members["json"]).get("label")
        else:
            raise KdflowError(f"webdataset {_url(fs, tar_path)}: sample {key} has no .cls or .json label")
        try:
            return f"{_url(fs, tar_path)}#{key}", int(label), img
        except (TypeError, ValueError):
            raise KdflowError(f"webdataset {_url(fs, tar_path)}: sample {key} label {label!r} is not an "
                              "integer") from None

    with fs.open(tar_path, "rb") as fh:
        try:
            tf = tarfile.open(fileobj=fh, mode="r|*")
            key, members = None, {}
            for m in tf:
                if not m.isfile():
                    continue
                d, base = posixpath.split(m.name)
                k, _, ext = base.partition(".")
                k = posixpath.join(d, k)
                if key is not None and k != key:
                    yield emit(key, members)
                    members = {}
                key = k
                members[ext.lower()] = tf.extractfile(m).read()
            if key is not None:
                yield emit(key, members)
        except tarfile.TarError as exc:
            raise KdflowError(f"webdataset {_url(fs, tar_path)}: not a readable tar: {exc}") from None


def _webdataset(spec: str, cfg: Data) -> tuple[list[str] | None, dict[str, Iterator]]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(spec, **cfg.storage_options)
    tars = sorted(fs.glob(posixpath.join(path, "*.tar"))) if fs.isdir(path) else sorted(fs.glob(path))
    if not tars:
        raise KdflowError(f"webdataset {spec}: no .tar shards found")

    def read():
        for t in tars:
            yield from _tar_samples(fs, t)
    return None, {"pool": read()}


def _hf_column(table_batch: dict, col: str) -> list[bytes]:
    vals = table_batch[col]
    return [v["bytes"] if isinstance(v, dict) else v for v in vals]


def _datasets(spec: str, cfg: Data) -> tuple[list[str] | None, dict[str, Iterator]]:
    from datasets import DatasetDict, Image, load_from_disk

    try:
        loaded = load_from_disk(spec, storage_options=cfg.storage_options or None)
    except FileNotFoundError as exc:
        raise KdflowError(f"datasets {spec}: not a save_to_disk directory: {exc}") from None
    parts = ({"pool": loaded["train"], **({"test": loaded["test"]} if "test" in loaded else {})}
             if isinstance(loaded, DatasetDict) else {"pool": loaded})
    first = parts["pool"]
    for col in (cfg.image_column, cfg.label_column):
        if col not in first.column_names:
            raise KdflowError(f"datasets {spec}: column '{col}' not found; columns: {first.column_names}")
    label_feat = first.features[cfg.label_column]
    classes = list(label_feat.names) if hasattr(label_feat, "names") else None

    def read(ds):
        if isinstance(ds.features[cfg.image_column], Image):
            ds = ds.cast_column(cfg.image_column, Image(decode=False))
        ds = ds.select_columns([cfg.image_column, cfg.label_column])
        i = 0
        for batch in ds.iter(batch_size=BATCH):
            for img, y in zip(_hf_column(batch, cfg.image_column), batch[cfg.label_column]):
                yield f"{spec}[{i}]", int(y), img
                i += 1
    return classes, {k: read(v) for k, v in parts.items()}


def _parquet_files(spec: str, cfg: Data):
    import fsspec

    fs, path = fsspec.core.url_to_fs(spec, **cfg.storage_options)
    if not fs.exists(path):
        raise KdflowError(f"data path not found: {spec}")
    return fs, sorted(fs.glob(posixpath.join(path, "*.parquet"))) if fs.isdir(path) else [path]


def _parquet_has_images(spec: str, cfg: Data) -> bool:
    import pyarrow.parquet as pq

    fs, files = _parquet_files(spec, cfg)
    if not files:
        return False
    with fs.open(files[0], "rb") as fh:
        schema = pq.read_schema(fh)
    return cfg.image_column in schema.names


def _parquet(spec: str, cfg: Data) -> tuple[list[str] | None, dict[str, Iterator]]:
    import pyarrow.parquet as pq

    fs, files = _parquet_files(spec, cfg)
    labels = []
    for f in files:
        with fs.open(f, "rb") as fh:
            schema = pq.read_schema(fh)
            if cfg.label_column not in schema.names:
                raise KdflowError(f"parquet {spec}: label column '{cfg.label_column}' not found; columns: "
                                  f"{schema.names}")
            labels += pq.read_table(fh, columns=[cfg.label_column]).column(0).to_pylist()
    classes = sorted({str(v) for v in labels}) if any(isinstance(v, str) for v in labels) else None
    index = {c: i for i, c in enumerate(classes or [])}

    def read():
        i = 0
        for f in files:
            with fs.open(f, "rb") as fh:
                for batch in pq.ParquetFile(fh).iter_batches(BATCH, columns=[cfg.image_column, cfg.label_column]):
                    d = batch.to_pydict()
                    for img, y in zip(_hf_column(d, cfg.image_column), d[cfg.label_column]):
                        yield f"{_url(fs, f)}[{i}]", index[str(y)] if classes else int(y), img
                        i += 1
    return classes, {"pool": read()}


READERS = {"imagefolder": _imagefolder, "webdataset": _webdataset, "datasets": _datasets, "parquet": _parquet}


# ---------------------------------------------------------------- staging

@dataclass
class Staged:
    """A source copied into local Arrow files: `parts["pool"]` (and `parts["test"]` for a predefined test split)."""

    parts: dict  # name -> datasets.Dataset (memory-mapped)
    classes: list[str]
    digests: dict[str, np.ndarray]  # name -> per-sample blake2b of the encoded bytes (leakage check)
    sizes: dict = field(default_factory=dict)  # min/max width and height seen
    skipped: dict = field(default_factory=lambda: {"count": 0, "examples": []})
    first_size: tuple[int, int] | None = None  # (H, W) of the first image


def stage(cfg: Data, workdir: Path, progress=None) -> Staged:
    """Read the source once into `workdir` (a temp dir owned by the caller)."""
    from datasets import Dataset, Features, Value
    from datasets.arrow_writer import ArrowWriter

    kind, _, arg = cfg.source.partition(":")
    if not arg:
        raise KdflowError(f"data.source {kind} needs a path: '{kind}:<path>'")
    classes, readers = READERS[kind](arg, cfg)
    features = Features({k: Value(v) for k, v in FEATURES.items()})
    mode = "L" if cfg.grayscale else "RGB"
    full = cfg.verify == "decode"
    skipped = {"count": 0, "examples": []}
    sizes = {"min_hw": None, "max_hw": None}
    first = None

    def check(sample):
        key, _, data = sample
        try:
            img = open_image(data, mode, key, full=full)
            return img.size[1], img.size[0]
        except KdflowError as exc:
            if cfg.bad_samples == "fail":
                raise KdflowError(f"{exc} (set data.bad_samples: skip to skip unreadable images)") from None
            return None

    parts, digests = {}, {}
    workdir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(2) as pool:  # PIL decodes with the GIL released
        for name, samples in readers.items():
            path = workdir / f"{name}.arrow"
            hashes = []
            with ArrowWriter(features=features, path=str(path)) as writer:
                for batch in _batched(samples, BATCH):
                    keep = {"key": [], "label": [], "image": []}
                    for sample, hw in zip(batch, pool.map(check, batch)):
                        if hw is None:
                            skipped["count"] += 1
                            if len(skipped["examples"]) < 10:
                                skipped["examples"].append(sample[0])
                            continue
                        first = first or hw
                        sizes["min_hw"] = [min(a, b) for a, b in zip(sizes["min_hw"] or hw, hw)]
                        sizes["max_hw"] = [max(a, b) for a, b in zip(sizes["max_hw"] or hw, hw)]
                        for k, v in zip(("key", "label", "image"), sample):
                            keep[k].append(v)
                        hashes.append(hashlib.blake2b(sample[2], digest_size=12).digest())
                    writer.write_batch(keep)
                    if progress:
                        progress(len(batch))
                writer.finalize()
            parts[name] = Dataset.from_file(str(path))
            digests[name] = np.array(hashes, dtype="S12")
            if not len(parts[name]):
                raise KdflowError(f"data source {cfg.source}: no readable images ({name})")
    if classes is None:
        top = max(int(np.max(p["label"])) for p in parts.values())
        classes = [str(i) for i in range(top + 1)]
    for p in parts.values():
        y = np.asarray(p["label"])
        if y.min() < 0 or y.max() >= len(classes):
            raise KdflowError(f"data source {cfg.source}: label {int(y.min() if y.min() < 0 else y.max())} "
                              f"out of range 0..{len(classes) - 1}")
    return Staged(parts, classes, digests, sizes, skipped, first)


def _batched(it, n):
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def decode_all(ds, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """Every image of a staged part as float32 (N, C, H, W) in [0, 1]: the in-memory path for small data."""
    from PIL import Image

    out = []
    for batch in ds.iter(batch_size=BATCH):
        for key, data in zip(batch["key"], batch["image"]):
            img = open_image(data, mode, key)
            if size:
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            out.append(np.asarray(img, np.uint8))
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise KdflowError(f"images differ in size {sorted(shapes)[:3]}; set data.image_size")
    x = np.stack(out).astype(np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


def raw_from_staged(staged: Staged, cfg: Data):
    """The in-memory backend's `Raw` from a staged source: every image decoded (resized to data.image_size)."""
    mode = "L" if cfg.grayscale else "RGB"
    size = tuple(cfg.image_size) if cfg.image_size else None
    xy = {k: (decode_all(p, size, mode), np.asarray(p.with_format("numpy")["label"], np.int64))
          for k, p in staged.parts.items()}
    raw = Raw(*xy["pool"], staged.classes, info={"skipped": staged.skipped})
    if "test" in xy:
        raw.x_test, raw.y_test = xy["test"]
        if raw.x_test.shape[1:] != raw.x.shape[1:]:
            raise KdflowError(f"test images are {raw.x_test.shape[1:]} but train images {raw.x.shape[1:]}; "
                              "set data.image_size")
    return raw


def load_encoded(cfg: Data):
    """`load_source` for an encoded-image source: staged in a temp dir, then decoded into memory."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kdflow-stage-") as work:
        return raw_from_staged(stage(cfg, Path(work)), cfg)
