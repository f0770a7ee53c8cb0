"""The streaming backend: encoded images in Arrow splits, decoded in loader workers."""

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from kdflow.data.module import KDDataModule
from kdflow.data.reader import load_info, load_split
from kdflow.errors import KdflowError
from kdflow.stages import prepare
from tests.helpers import tiny_cfg

CLASSES = ("cat", "dog", "owl")
SPLITS = {"data__val_size": 9, "data__test_size": 9, "data__transfer_size": 9}
EXACT = {"data__views__train": "resize", "data__views__eval": "resize", "data__image_size": [12, 12]}


def _jpeg(rng, h, w) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """60 JPEGs of mixed sizes: (class, name, bytes) in ImageFolder order (class, then file name)."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("imgs")
    samples = []
    for ci, c in enumerate(CLASSES):
        (root / c).mkdir()
        for i in range(20):
            data = _jpeg(rng, *((16, 20) if i % 2 else (14, 14)))
            (root / c / f"{i:03d}.jpg").write_bytes(data)
            samples.append((ci, f"{c}-{i:03d}", data))
    return root, samples


def _prep(tmp_path, name, **kw):
    out = tmp_path / name
    prepare.run(tiny_cfg(**SPLITS, **kw), {}, {"data": out})
    return out


def test_memory_and_streaming_agree_on_small_data(tmp_path, images):
    from kdflow.stages import train_teacher

    root, _ = images
    src = {"data__source": f"imagefolder:{root}", **EXACT}
    mem = _prep(tmp_path, "mem", **src, data__format="memory")
    st = _prep(tmp_path, "st", **src, data__format="streaming")
    assert load_info(mem)["format"] == "memory" and load_info(st)["format"] == "streaming"
    assert (st / "train" / "state.json").is_file() and not (st / "train.npz").exists()
    for split in ("train", "val", "test", "transfer"):
        a, b = load_split(mem, split), load_split(st, split)
        assert np.array_equal(a["id"], b["id"]) and np.array_equal(a["y"], b["y"]) and np.array_equal(a["x"], b["x"])
    assert np.allclose(load_info(mem)["normalization"]["std"], load_info(st)["normalization"]["std"], atol=1e-12)
    # same batches from both loaders, and the same trained weights
    cfg = dict(teacher__model={"name": "cnn2d", "kwargs": {"channels": [4]}}, teacher__train__epochs=2,
               teacher__train__batch_size=8, **src)
    weights = []
    for data in (mem, st):
        out = tmp_path / f"teacher-{data.name}"
        train_teacher.run(tiny_cfg(**SPLITS, **cfg), {"data": data}, {"model": out, "checkpoints": tmp_path / "ck"})
        weights.append(torch.load(out / "model.pt", weights_only=True))
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.allclose(weights[0][k].float(), weights[1][k].float(), atol=1e-6), k


def test_auto_format_by_decoded_size(tmp_path, images):
    root, _ = images
    src = {"data__source": f"imagefolder:{root}", **EXACT}
    assert load_info(_prep(tmp_path, "a", **src))["format"] == "memory"
    assert load_info(_prep(tmp_path, "b", **src, data__memory_limit_mb=0.01))["format"] == "streaming"
    with pytest.raises(KdflowError, match="data.format streaming needs an encoded-image source"):
        _prep(tmp_path, "c", data__format="streaming")


def test_every_source_kind_gives_the_same_dataset(tmp_path, images):
    """imagefolder (through fsspec's memory://), WebDataset tars, a save_to_disk directory and Parquet with
    an image-bytes column, built from the same images in the same order, prepare to identical splits."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as HFImage

    _, samples = images
    mem = fsspec.filesystem("memory")
    for ci, name, data in samples:
        mem.pipe(f"/kdflow-test/{CLASSES[ci]}/{name}.jpg", data)
    wds = tmp_path / "wds"
    wds.mkdir()
    for shard in range(2):
        with tarfile.open(wds / f"shard-{shard:05d}.tar", "w") as tf:
            for k, (ci, _name, data) in enumerate(samples[shard * 30:(shard + 1) * 30]):
                for ext, blob in (("jpg", data), ("cls", str(ci).encode())):
                    info = tarfile.TarInfo(f"{shard * 30 + k:06d}.{ext}")
                    info.size = len(blob)
                    tf.addfile(info, io.BytesIO(blob))
    feats = Features({"image": HFImage(), "label": ClassLabel(names=list(CLASSES))})
    Dataset.from_dict({"image": [{"bytes": d, "path": None} for _, _, d in samples],
                       "label": [c for c, _, _ in samples]}, features=feats).save_to_disk(str(tmp_path / "hf"))
    pq.write_table(pa.table({"image": [d for _, _, d in samples], "label": [CLASSES[c] for c, _, _ in samples]}),
                   tmp_path / "p.parquet", row_group_size=16)
    sources = {"folder": "imagefolder:memory://kdflow-test", "wds": f"webdataset:{wds}",
               "hf": f"datasets:{tmp_path / 'hf'}", "pq": f"parquet:{tmp_path / 'p.parquet'}"}
    outs = {k: _prep(tmp_path, k, data__source=v, data__format="streaming", **EXACT) for k, v in sources.items()}
    ref = {s: load_split(outs["folder"], s) for s in ("train", "test", "transfer")}
    assert load_info(outs["folder"])["classes"] == list(CLASSES) == load_info(outs["hf"])["classes"]
    assert load_info(outs["wds"])["classes"] == ["0", "1", "2"]  # tars carry integer labels only
    for k in ("wds", "hf", "pq"):
        for s, want in ref.items():
            got = load_split(outs[k], s)
            assert all(np.array_equal(got[a], want[a]) for a in ("x", "y", "id")), (k, s)


def test_bad_image_fails_naming_it_or_is_skipped_and_counted(tmp_path, images):
    import shutil

    root = tmp_path / "imgs"
    shutil.copytree(images[0], root)
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    src = {"data__source": f"imagefolder:{root}", "data__format": "streaming", **EXACT}
    with pytest.raises(KdflowError, match=r"cannot read image .*dog/broken\.jpg.*bad_samples: skip"):
        _prep(tmp_path, "fail", **src)
    assert not (tmp_path / "fail").exists() and not list(tmp_path.glob(".fail*"))  # nothing half-written
    info = load_info(_prep(tmp_path, "skip", **src, data__bad_samples="skip"))
    assert info["skipped"]["count"] == 1 and info["skipped"]["examples"][0].endswith("dog/broken.jpg")
    assert sum(info["counts"].values()) == 60


def test_views_are_seeded_per_sample_and_epoch(tmp_path, images):
    from kdflow.config import ImageViews
    from kdflow.data.images import center_box, sample_rng, view

    img = Image.open(images[0] / "cat" / "001.jpg").convert("RGB")  # 20 x 16
    v = ImageViews()
    a = view(img, (8, 8), "random_resized_crop", v, sample_rng(0, 1, 5))
    assert a.shape == (3, 8, 8) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, view(img, (8, 8), "random_resized_crop", v, sample_rng(0, 1, 5)))
    assert not np.array_equal(a, view(img, (8, 8), "random_resized_crop", v, sample_rng(0, 2, 5)))
    assert center_box(20, 16, (8, 8), 0.5) == (6.0, 4.0, 14.0, 12.0)  # shorter side 16 -> 8-pixel center box

    st = _prep(tmp_path, "st", data__source=f"imagefolder:{images[0]}", data__format="streaming",
               data__image_size=[8, 8])
    dm = KDDataModule(st, batch_size=16, seed=0, num_workers=1)
    dl = dm.train_dataloader()
    dl.sampler.set_epoch(0)
    e0 = [b for b in dl]
    assert all(torch.equal(x, y) for x, y in zip((b[0] for b in e0), (b[0] for b in dl)))  # same epoch again
    dl.sampler.set_epoch(1)
    assert not torch.equal(e0[0][2], next(iter(dl))[2])
    assert json.loads((st / "dataset.json").read_text())["views"]["train"] == "random_resized_crop"


def test_soft_targets_and_distill_agree_across_backends(tmp_path, images):
    """Soft targets streamed batch by batch and distillation through the memory-mapped table give what the
    in-memory path gives on the same small data."""
    from kdflow.config import ModelSpec
    from kdflow.models import build_model, save_model
    from kdflow.soft_target_store import read_store
    from kdflow.stages import distill, soft_targets
    from kdflow.stages.common import spec_for

    root, _ = images
    kw = dict(data__source=f"imagefolder:{root}", **EXACT, soft_targets__shard_size=16,
              student__model={"name": "cnn2d", "kwargs": {"channels": [4]}},
              distill__train={"epochs": 1, "batch_size": 8, "progress_bar": False})
    torch.manual_seed(0)
    teacher = None
    results = []
    for fmt in ("memory", "streaming"):
        data = _prep(tmp_path, fmt, **kw, data__format=fmt)
        if teacher is None:
            spec = spec_for(ModelSpec(name="cnn2d", kwargs={"channels": [6]}), load_info(data))
            teacher = tmp_path / "teacher"
            save_model(build_model(spec), teacher, spec, role="teacher")
        cfg = tiny_cfg(**SPLITS, **kw)
        soft_targets.run(cfg, {"data": data, "teacher": teacher}, {"soft_targets": tmp_path / f"st-{fmt}"})
        ids, logits, manifest = read_store(tmp_path / f"st-{fmt}")
        assert len(manifest["shards"]) == -(-len(ids) // 16)
        out = tmp_path / f"student-{fmt}"
        distill.run(cfg, {"data": data, "soft_targets": tmp_path / f"st-{fmt}"},
                    {"model": out, "checkpoints": tmp_path / f"ck-{fmt}"})
        results.append((ids, logits, torch.load(out / "model.pt", weights_only=True)))
    (ids_a, lg_a, w_a), (ids_b, lg_b, w_b) = results
    assert np.array_equal(ids_a, ids_b) and np.allclose(lg_a, lg_b, atol=1e-3)
    assert all(torch.allclose(w_a[k].float(), w_b[k].float(), atol=1e-5) for k in w_a)
    # evaluate reads the streaming test split too
    from kdflow.stages import evaluate

    models = {"teacher": teacher, "baseline": tmp_path / "student-memory", "student": tmp_path / "student-streaming"}
    got = evaluate.run(tiny_cfg(**SPLITS, **kw, compress__onnx=False), {"data": tmp_path / "streaming", **models},
                       {"metrics": tmp_path / "metrics"})
    assert got["baseline.accuracy"] == got["student.accuracy"]  # the same weights, the same test images


def test_born_again_uses_the_streaming_transfer_split(tmp_path, images):
    """born_again distils on train + transfer for a streaming dataset as for an in-memory one: same weights."""
    from kdflow.config import ModelSpec
    from kdflow.models import build_model, save_model
    from kdflow.stages import born_again
    from kdflow.stages.common import spec_for

    root, _ = images
    kw = dict(data__source=f"imagefolder:{root}", **EXACT, born_again__generations=1,
              distill__train={"epochs": 1, "batch_size": 8, "progress_bar": False})
    torch.manual_seed(0)
    gen0, weights = None, []
    for fmt in ("memory", "streaming"):
        data = _prep(tmp_path, fmt, **kw, data__format=fmt)
        if gen0 is None:
            spec = spec_for(ModelSpec(name="cnn2d", kwargs={"channels": [4]}), load_info(data))
            gen0 = tmp_path / "gen0"
            save_model(build_model(spec), gen0, spec, role="student")
        out = tmp_path / f"ba-{fmt}"
        got = born_again.run(tiny_cfg(**SPLITS, **kw), {"data": data, "teacher": gen0},
                             {"generations": out, "checkpoints": tmp_path / f"ck-{fmt}"})
        assert got["transfer_samples"] == 9, fmt
        weights.append(torch.load(out / "gen-1" / "model.pt", weights_only=True))
    assert all(torch.allclose(weights[0][k].float(), weights[1][k].float(), atol=1e-5) for k in weights[0])
