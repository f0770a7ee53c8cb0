import gzip
import struct

import numpy as np
import pytest
import torch

from kdflow.config import Augment, Data
from kdflow.data.augment import augment
from kdflow.data.module import KDDataModule
from kdflow.data.reader import load_split
from kdflow.data.sources import load_source
from kdflow.data.split import leakage
from kdflow.errors import KdflowError
from kdflow.stages import prepare
from tests.helpers import tiny_cfg


def test_prepare_writes_splits_and_manifest(prepared):
    from kdflow.data.reader import load_info

    info = load_info(prepared)
    assert info["counts"] == {"train": 400, "val": 100, "test": 100, "transfer": 300}
    assert info["input_shape"] == [1, 40] and info["num_classes"] == 10
    assert all(c == 40 for c in info["class_counts"]["train"])  # stratified
    assert (load_split(prepared, "transfer")["y"] == -1).all()
    ids = np.concatenate([load_split(prepared, s)["id"] for s in ("train", "val", "test", "transfer")])
    assert len(np.unique(ids)) == len(ids)  # ids are global and unique
    # normalization statistics come from train alone
    x = load_split(prepared, "train")["x"]
    assert info["normalization"]["mean"][0] == pytest.approx(float(x.mean()), abs=1e-5)


def test_split_is_deterministic(tmp_path):
    for name in ("a", "b"):
        prepare.run(tiny_cfg(data__transfer_size=0), {}, {"data": tmp_path / name})
    for split in ("train", "val", "test"):
        a, b = load_split(tmp_path / "a", split), load_split(tmp_path / "b", split)
        assert np.array_equal(a["id"], b["id"]) and np.array_equal(a["x"], b["x"])
    prepare.run(tiny_cfg(data__transfer_size=0, data__seed=1), {}, {"data": tmp_path / "c"})
    assert not np.array_equal(load_split(tmp_path / "a", "test")["x"], load_split(tmp_path / "c", "test")["x"])


def test_digits_and_held_back_transfer(tmp_path):
    out = tmp_path / "d"
    prepare.run(tiny_cfg(data__source="digits", data__transfer_size=200, data__val_size=0.1,
                         data__test_size=0.2), {}, {"data": out})
    tr = load_split(out, "transfer")
    assert tr["x"].shape[1:] == (1, 8, 8) and len(tr["y"]) == 200 and (tr["y"] == -1).all()
    train_ids = set(load_split(out, "train")["id"].tolist())
    assert not train_ids & set(tr["id"].tolist())  # held back, not shared with train


def test_leakage_counts_and_fails(tmp_path):
    x = np.random.default_rng(0).normal(size=(60, 1, 5)).astype(np.float32)
    assert leakage({"train": x[:40], "test": np.concatenate([x[35:45]])})["train~test"] == 5
    y = np.tile(np.arange(3), 20)
    x[50:] = x[:10]  # 10 exact duplicates in the pool
    np.savez(tmp_path / "dup.npz", x=x, y=y)
    with pytest.raises(KdflowError, match="leakage: .* test samples also appear in train"):
        prepare.run(tiny_cfg(data__source=f"npz:{tmp_path / 'dup.npz'}", data__transfer_size=0,
                             data__val_size=6, data__test_size=30), {}, {"data": tmp_path / "out"})
    assert not (tmp_path / "out").exists()
    prepare.run(tiny_cfg(data__source=f"npz:{tmp_path / 'dup.npz'}", data__transfer_size=0, data__val_size=6,
                         data__test_size=30, data__allow_test_leakage=True), {}, {"data": tmp_path / "out"})


def _idx(path, arr):
    header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_bring_your_own_sources(tmp_path):
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 255, (30, 6, 6)), np.tile(np.arange(3), 10)
    _idx(tmp_path / "i.gz", imgs)
    _idx(tmp_path / "l.gz", labels)
    raw = load_source(Data(source=f"idx:{tmp_path / 'i.gz'},{tmp_path / 'l.gz'}"))
    assert raw.x.shape == (30, 1, 6, 6) and raw.x.max() <= 1 and list(raw.y[:3]) == [0, 1, 2]

    mnist = tmp_path / "mnist"  # MNIST's layout: official test split kept, plain and gzipped files mixed
    mnist.mkdir()
    _idx(mnist / "train-images-idx3-ubyte.gz", imgs)
    _idx(mnist / "train-labels-idx1-ubyte.gz", labels)
    _idx(mnist / "t10k-images-idx3-ubyte.gz", imgs[:9])
    with pytest.raises(KdflowError, match="missing t10k-labels-idx1-ubyte"):
        load_source(Data(source=f"mnist:{mnist}"))
    _idx(mnist / "labels.gz", labels[:9])
    (mnist / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress((mnist / "labels.gz").read_bytes()))
    raw = load_source(Data(source=f"mnist:{mnist}"))
    assert raw.x.shape == (30, 1, 6, 6) and raw.x_test.shape == (9, 1, 6, 6) and list(raw.y_test[:3]) == [0, 1, 2]

    import pandas as pd

    df = pd.DataFrame({"a": rng.normal(size=12), "b": rng.normal(size=12), "label": ["x", "y", "z"] * 4})
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    for kind in ("csv", "parquet"):
        raw = load_source(Data(source=f"{kind}:{tmp_path / f't.{kind}'}"))
        assert raw.x.shape == (12, 2) and raw.classes == ["x", "y", "z"]
    with pytest.raises(KdflowError, match="label column 'target' not found"):
        load_source(Data(source=f"csv:{tmp_path / 't.csv'}", label_column="target"))

    from PIL import Image

    for part in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / "imgs" / part / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / part / c / f"{i}.png")
    raw = load_source(Data(source=f"imagefolder:{tmp_path / 'imgs'}", image_size=[8, 8]))
    assert raw.x.shape == (6, 3, 8, 8) and raw.x_test.shape == (6, 3, 8, 8) and raw.classes == ["cat", "dog"]


@pytest.mark.parametrize("bad, message", [
    ({"x": np.array([[1.0, np.nan]] * 4), "y": np.arange(4)}, "contain NaN or inf"),
    ({"x": np.ones((4, 2)), "y": np.array([0, 1, -1, 2])}, "label -1 out of range"),
    ({"x": np.ones((4, 2))}, r"lacks arrays \['y'\]"),
])
def test_bad_data_gets_a_clear_error(tmp_path, bad, message):
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(KdflowError, match=message):
        load_source(Data(source=f"npz:{tmp_path / 'bad.npz'}"))


def test_missing_path_and_unknown_source():
    with pytest.raises(KdflowError, match="data path not found: /nope.npz"):
        load_source(Data(source="npz:/nope.npz"))
    with pytest.raises(KdflowError, match="unknown data.source 'hdf5:x'"):
        load_source(Data(source="hdf5:x"))


def test_loader_serves_ids_and_reshuffles_per_epoch(prepared):
    dm = KDDataModule(prepared, batch_size=32, seed=0, with_transfer=True)
    dl = dm.train_dataloader()
    first = torch.cat([b[2] for b in dl])
    assert len(first) == (400 + 300) // 32 * 32  # drop_last on shuffled loaders
    dl.sampler.set_epoch(1)
    second = torch.cat([b[2] for b in dl])
    assert not torch.equal(first, second)
    dl.sampler.set_epoch(0)
    assert torch.equal(first, torch.cat([b[2] for b in dl]))  # same epoch → same order (resume)
    x, y, ids = next(iter(dl))
    pool_ids = np.concatenate([load_split(prepared, s)["id"] for s in ("train", "transfer")])
    by_id = {int(i): k for k, i in enumerate(pool_ids)}
    pool = np.concatenate([load_split(prepared, s)["x"] for s in ("train", "transfer")])
    assert np.array_equal(x.numpy(), pool[[by_id[int(i)] for i in ids]])


@pytest.mark.parametrize("shape, a", [
    ((8, 1, 40), Augment(enabled=True, shift=3, stretch=0.1, scale=0.2, ramp=0.2, smooth_noise=0.1, noise=0.05)),
    ((8, 3, 16, 16), Augment(enabled=True, crop_pad=2, flip=True, rotate=10)),
])
def test_augmentation_is_seeded_and_shape_preserving(shape, a):
    x = torch.randn(shape)
    out1 = augment(x, a, torch.Generator().manual_seed(0))
    out2 = augment(x, a, torch.Generator().manual_seed(0))
    assert out1.shape == x.shape and torch.equal(out1, out2) and not torch.allclose(out1, x)
    assert torch.equal(augment(x, Augment(), torch.Generator()), x)  # off by default
