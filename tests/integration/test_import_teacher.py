"""Distill your own model: an existing teacher file (ONNX, no Python code) + an image folder → student → report.

Real stages end to end on real images (scikit-learn's digits written as PNG class folders), with a
student that starts from an earlier run's weights (`student.init_from`).
"""

import numpy as np
import pytest
import torch

from kdflow.compress import export_onnx
from kdflow.data.reader import load_split
from kdflow.io import read_json, sha256_file
from kdflow.models import build_model, load_model
from kdflow.stages import distill, evaluate, prepare, soft_targets, train_baseline, train_teacher
from tests.helpers import tiny_cfg

pytestmark = pytest.mark.integration


def _image_folder(root):
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = d.target < 4
    for i, (img, y) in enumerate(zip(d.images[keep][:400], d.target[keep][:400])):
        (root / f"digit{y}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255 / 16).astype(np.uint8)).save(root / f"digit{y}" / f"{i}.png")
    return root


def _existing_teacher(data, path):
    """Someone else's teacher: trained outside kdflow, shipped as an ONNX graph (normalization inside)."""
    torch.manual_seed(0)
    spec = {"name": "cnn2d", "kwargs": {"channels": [16, 32]}, "input_shape": [1, 8, 8], "num_classes": 4,
            "mean": [0.3], "std": [0.4]}
    model = build_model(spec)
    train = load_split(data, "train")
    x, y = torch.from_numpy(train["x"]), torch.from_numpy(train["y"])
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return export_onnx(model.eval(), path, spec["input_shape"])


def test_onnx_teacher_and_image_folder_to_student_and_report(tmp_path):
    images = _image_folder(tmp_path / "images")
    p = {k: tmp_path / k for k in ("data", "teacher", "st", "baseline", "student", "metrics")}
    student = {"model": {"name": "cnn2d", "kwargs": {"channels": [4, 8]}},
               "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "progress_bar": False}}
    cfg = tiny_cfg(data={"source": f"imagefolder:{images}", "val_size": 60, "test_size": 80, "grayscale": True},
                   student=student, evaluate__noise_sigma=[], compress={"int8": False, "onnx": False})
    prepare.run(cfg, {}, {"data": p["data"]})
    onnx_file = _existing_teacher(p["data"], tmp_path / "teacher.onnx")

    cfg = tiny_cfg(**{**cfg.model_dump(mode="json"), "teacher": {"source": {"uri": str(onnx_file)}}})
    summary = train_teacher.run(cfg, {"data": p["data"]}, {"model": p["teacher"]})
    doc = read_json(p["teacher"] / "model.json")
    assert doc["source"]["sha256"]["teacher.onnx"] == sha256_file(onnx_file) == doc["lineage"]["source_sha256"][-64:]
    assert doc["training"]["imported"] and summary["best_val_acc"] > 0.5 and doc["params"] > 1000

    # the same folder as a streaming dataset: the imported teacher is scored batch by batch, same answer
    st_cfg = tiny_cfg(**{**cfg.model_dump(mode="json"), "data": {
        **cfg.data.model_dump(mode="json"), "format": "streaming", "image_size": [8, 8],
        "views": {"train": "resize", "eval": "resize"}}})
    prepare.run(st_cfg, {}, {"data": tmp_path / "data-st"})
    st_summary = train_teacher.run(st_cfg, {"data": tmp_path / "data-st"}, {"model": tmp_path / "teacher-st"})
    val = load_split(tmp_path / "data-st", "val")
    with torch.no_grad():
        whole = load_model(p["teacher"])[0](torch.from_numpy(val["x"])).argmax(1).numpy()
    assert st_summary["best_val_acc"] == pytest.approx(float((whole == val["y"]).mean()))

    soft_targets.run(cfg, {"data": p["data"], "teacher": p["teacher"]}, {"soft_targets": p["st"]})
    train_baseline.run(cfg, {"data": p["data"]}, {"model": p["baseline"]})
    # the student starts from the baseline's weights (an earlier run) through the same sources
    cfg = tiny_cfg(**{**cfg.model_dump(mode="json"), "student": {**student, "init_from": {"uri": str(p["baseline"])}}})
    distill.run(cfg, {"data": p["data"], "soft_targets": p["st"]}, {"model": p["student"]})
    assert load_model(p["student"])[1]["init_from"]["uri"] == str(p["baseline"])

    evaluate.run(cfg, {"data": p["data"], "teacher": p["teacher"], "baseline": p["baseline"],
                       "student": p["student"]}, {"metrics": p["metrics"]})
    m = read_json(p["metrics"] / "metrics.json")
    test = load_split(p["data"], "test")
    teacher, _ = load_model(p["teacher"])
    with torch.no_grad():
        acc = float((teacher(torch.from_numpy(test["x"])).argmax(1).numpy() == test["y"]).mean())
    assert m["teacher.accuracy"] == pytest.approx(acc) and "teacher.fgsm_acc_0.05" not in m  # ONNX: no gradients
    assert "student.fgsm_acc_0.05" in m and m["student.accuracy"] > 0.25
    html = (p["metrics"] / "report.html").read_text()
    assert str(onnx_file) in html and "imported" in html and "initialised from" in html
