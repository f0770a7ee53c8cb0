"""Stage `evaluate`: teacher, no-KD baseline and student on the test split, side by side.

Writes `metrics.json` (flat keys `<role>.<metric>` plus derived ratios), DVC plot data under
`plots/` and a self-contained `report.html`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from kdflow import tracking
from kdflow.config import Params
from kdflow.data.module import load_info, load_split
from kdflow.evaluation import metrics as M
from kdflow.evaluation import perf, report
from kdflow.io import atomic_dir, write_json
from kdflow.models import load_model
from kdflow.stages.common import check_classes, need

ROLES = ("teacher", "baseline", "student")


def _curves(model_dir: Path) -> list[dict]:
    f = model_dir / "curves.csv"
    if not f.is_file():
        return []
    rows = [r for r in csv.DictReader(io.StringIO(f.read_text())) if r.get("val_acc")]
    return [{"epoch": int(r["epoch"]), "val_acc": float(r["val_acc"]), "val_loss": float(r["val_loss"])}
            for r in rows]


def evaluate_model(model, spec: dict, x: torch.Tensor, y: torch.Tensor, cfg: Params) -> tuple[dict, torch.Tensor]:
    e = cfg.evaluate
    std = model.std.detach()
    mean = model.mean.detach()
    logits = M.predict(model, x)
    out = M.quality(logits, y, e.calibration_bins)
    for s in e.noise_sigma:
        out[f"noise_acc_{s:g}"] = M.noise_accuracy(model, x, y, s, std)
    for eps in e.fgsm_eps:
        out[f"fgsm_acc_{eps:g}"] = M.fgsm_accuracy(model, x, y, eps, std)
    out["ood_auroc"] = M.ood_auroc(model, x, M.ood_inputs(e.ood, e.ood_samples, spec["input_shape"], mean, std))
    out.update(perf.cost(model, spec["input_shape"], e.latency_repeats, e.throughput_batch))
    out["params"] = spec["params"]
    out["size_bytes"] = spec["size_bytes"]
    probs = logits.softmax(1)
    out["confidence_mean"] = float(probs.max(1).values.mean())
    return out, logits


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    data = need(inputs, "data", "evaluate")
    info = load_info(data)
    out_dir = need(outputs, "metrics", "evaluate")
    test = load_split(data, "test")
    x, y = torch.from_numpy(test["x"]), torch.from_numpy(test["y"])
    torch.manual_seed(cfg.seed)
    flat: dict[str, float] = {}
    logits, curves, specs = {}, {}, {}
    with tracking.stage_run(cfg, "evaluate", cfg.evaluate.model_dump(mode="json"), info["hash"]):
        for role in ROLES:
            path = need(inputs, role, "evaluate")
            model, spec = load_model(path)
            check_classes(spec, info, f"{role} {path}")
            res, logits[role] = evaluate_model(model, spec, x, y, cfg)
            flat.update({f"{role}.{k}": v for k, v in res.items()})
            curves[role], specs[role] = _curves(path), spec
        t, b, s = (flat[f"{r}.accuracy"] for r in ROLES)
        pred_t = logits["teacher"].argmax(1)
        pred_s = logits["student"].argmax(1)
        flat.update({
            "retention": s / t if t else 0.0,
            "kd_gain": s - b,
            "compression": flat["teacher.params"] / flat["student.params"],
            "speedup": flat["teacher.latency_p50_ms"] / flat["student.latency_p50_ms"],
            "throughput_ratio": flat["student.throughput_per_s"] / flat["teacher.throughput_per_s"],
            "teacher_agreement": float((pred_t == pred_s).float().mean()),
            "baseline_teacher_agreement": float((pred_t == logits["baseline"].argmax(1)).float().mean()),
        })
        share = torch.bincount(pred_s, minlength=info["num_classes"]).float() / len(pred_s)
        flat.update({f"student.class_share.{k}": float(v) for k, v in enumerate(share)})
        tracking.log_metrics(flat)
        with atomic_dir(out_dir) as tmp:
            _write(tmp, cfg, info, flat, logits, y, curves)
    return {k: flat[k] for k in ("teacher.accuracy", "baseline.accuracy", "student.accuracy", "retention",
                                 "kd_gain", "compression", "speedup")}


def _write(tmp: Path, cfg: Params, info: dict, flat: dict, logits: dict, y: torch.Tensor, curves: dict) -> None:
    bins = cfg.evaluate.calibration_bins
    write_json(tmp / "metrics.json", flat)
    plots = tmp / "plots"
    plots.mkdir()
    classes = info["classes"]
    pred = logits["student"].argmax(1)
    with open(plots / "confusion.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["actual", "predicted"])
        w.writerows([classes[a], classes[p]] for a, p in zip(y.tolist(), pred.tolist()))
    rel = {r: M.reliability(lg, y, bins) for r, lg in logits.items()}
    (plots / "reliability.json").write_text(json.dumps(
        [{"role": r, **p} for r, pts in rel.items() for p in pts], indent=1))
    (plots / "curves.json").write_text(json.dumps(
        [{"role": r, **p} for r, pts in curves.items() for p in pts], indent=1))
    rows = [{"model": r, **{k: flat[f"{r}.{k}"] for k in ("accuracy", "macro_f1", "nll", "ece", "ood_auroc",
                                                         "params", "flops", "latency_p50_ms", "latency_p95_ms",
                                                         "throughput_per_s")}} for r in ROLES]
    robust = [{"model": r, **{k.split(".", 1)[1]: v for k, v in flat.items()
                              if k.startswith(f"{r}.") and ("noise_acc" in k or "fgsm_acc" in k)}} for r in ROLES]
    derived = [{k: flat[k] for k in ("retention", "kd_gain", "compression", "speedup", "throughput_ratio",
                                     "teacher_agreement")}]
    report.write_report(
        tmp / "report.html", f"kdflow report — {info['source']}",
        [("Test split", report.table_html(rows, list(rows[0]))),
         ("Robustness", report.table_html(robust, list(robust[0]))),
         ("Distillation", report.table_html(derived, list(derived[0])))],
        [("confusion", report.confusion_png(M.confusion(logits["student"], y), classes, "student confusion")),
         ("reliability", report.reliability_png(rel)), ("curves", report.curves_png(curves))],
    )
    np.savetxt(plots / "confusion_matrix.txt", M.confusion(logits["student"], y), fmt="%d")
