"""Every stage on tiny data, in pipeline order, through the same `run` the CLI, DVC and KFP call."""

import json

import pytest
import torch

from kdflow.models import load_model
from kdflow.stages import (
    distill,
    evaluate,
    finetune,
    register,
    soft_targets,
    train_baseline,
    train_teacher,
)
from kdflow.tracking import CHALLENGER, CHAMPION, resolve_alias
from tests.helpers import tiny_cfg

METRIC_KEYS = [f"{r}.{m}" for r in ("teacher", "baseline", "student") for m in (
    "accuracy", "macro_f1", "nll", "ece", "noise_acc_0.1", "fgsm_acc_0.05", "ood_auroc", "params", "flops",
    "size_bytes", "latency_p50_ms", "latency_p95_ms", "throughput_per_s")] + [
    "retention", "kd_gain", "compression", "speedup", "teacher_agreement"]


@pytest.fixture(scope="module")
def pipeline(prepared, tmp_path_factory):
    d = tmp_path_factory.mktemp("pipe")
    cfg = tiny_cfg()
    p = {"data": prepared, "teacher": d / "teacher", "st": d / "st", "baseline": d / "baseline",
         "student": d / "student", "final": d / "final", "metrics": d / "metrics", "reg": d / "reg"}
    out = {
        "teacher": train_teacher.run(cfg, {"data": prepared}, {"model": p["teacher"]}),
        "st": soft_targets.run(cfg, {"data": prepared, "teacher": p["teacher"]}, {"soft_targets": p["st"]}),
        "baseline": train_baseline.run(cfg, {"data": prepared}, {"model": p["baseline"]}),
        "distill": distill.run(cfg, {"data": prepared, "soft_targets": p["st"]}, {"model": p["student"]}),
        "finetune": finetune.run(cfg, {"data": prepared, "student": p["student"]}, {"model": p["final"]}),
    }
    out["evaluate"] = evaluate.run(cfg, {"data": prepared, "teacher": p["teacher"], "baseline": p["baseline"],
                                         "student": p["final"]}, {"metrics": p["metrics"]})
    out["register"] = register.run(cfg, {"data": prepared, "student": p["final"], "teacher": p["teacher"],
                                         "metrics": p["metrics"]}, {"registration": p["reg"]})
    return p, out


def test_training_stages_write_models_with_lineage(pipeline):
    p, out = pipeline
    for role in ("teacher", "baseline", "student", "final"):
        model, spec = load_model(p[role])
        assert spec["lineage"]["data_hash"] and spec["lineage"]["params_hash"]
        assert model(torch.zeros(2, 1, 40)).shape == (2, 10)
    assert not list(p["teacher"].parent.glob(".*.ckpt/*.ckpt"))  # checkpoints cleared after success
    assert load_model(p["student"])[1]["lineage"]["teachers"][0]["name"] == "cnn1d"
    assert out["distill"]["transfer_samples"] == 300
    assert out["finetune"]["finetuned"] is True


def test_soft_targets_cover_train_val_transfer(pipeline):
    p, out = pipeline
    manifest = json.loads((p["st"] / "soft_targets.json").read_text())
    assert manifest["num_samples"] == 400 + 100 + 300 == out["st"]["samples"]
    assert manifest["splits"] == ["train", "val", "transfer"] and manifest["raw_logits"]


def test_evaluate_writes_metrics_plots_report(pipeline):
    p, _ = pipeline
    m = json.loads((p["metrics"] / "metrics.json").read_text())
    assert not [k for k in METRIC_KEYS if k not in m]
    assert m["retention"] == pytest.approx(m["student.accuracy"] / m["teacher.accuracy"])
    assert m["kd_gain"] == pytest.approx(m["student.accuracy"] - m["baseline.accuracy"])
    assert m["teacher.params"] > m["student.params"]
    for f in ("plots/confusion.csv", "plots/reliability.json", "plots/curves.json"):
        assert (p["metrics"] / f).stat().st_size > 0
    html = (p["metrics"] / "report.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")


def test_register_sets_aliases(pipeline):
    _, out = pipeline
    reg = out["register"]
    assert resolve_alias("tiny-student", CHALLENGER) == reg["version"]
    if reg["promoted"]:
        assert resolve_alias("tiny-student", CHAMPION) == reg["version"]


def test_distill_online_equals_offline_without_augmentation(pipeline, prepared):
    """The online teacher reproduces the cached logits, so the loss matches (float16 storage aside)."""
    from kdflow.lit.modules import DistillModule
    from kdflow.models import build_model
    from kdflow.soft_targets import lookup_table

    p, _ = pipeline
    cfg = tiny_cfg()
    teacher, spec = load_model(p["teacher"])
    student = build_model({**spec, "name": "cnn1d", "kwargs": {"channels": [8, 8, 8]}})
    online = DistillModule(student, cfg.distill, teacher=teacher)
    offline = DistillModule(student, cfg.distill, table=lookup_table(p["st"]))
    from kdflow.data.module import KDDataModule

    x, y, ids = next(iter(KDDataModule(prepared, 64, with_transfer=True).train_dataloader()))
    logits = student(x)
    assert online.objective(logits, x, y, ids).item() == pytest.approx(
        offline.objective(logits, x, y, ids).item(), rel=1e-2)
