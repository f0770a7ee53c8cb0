"""Stage `evaluate`: teacher, no-KD baseline and student on the test split, side by side.

Writes `metrics.json` (flat keys `<role>.<metric>` plus derived ratios), DVC plot data under
`plots/` and a self-contained `report.html`. Two optional sections: the student compressed
(`compress.*`: fp32 vs dynamic int8 vs ONNX — accuracy, size, batch-1 latency, max |Δlogit|) and,
when the student is a born-again generation (its directory sits beside `generations.json`, or
`inputs["generations"]` names that directory), every generation (`born_again.gen<k>.*`).
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
from kdflow.data.reader import for_student, load_info, load_split
from kdflow.evaluation import perf, report
from kdflow.evaluation import quality as M
from kdflow.evaluation.show import ratios, verdict
from kdflow.inference import engine
from kdflow.io import atomic_dir, write_json
from kdflow.models import load_model
from kdflow.progress import Ticker
from kdflow.stages.common import check_classes, need

ROLES = ("teacher", "baseline", "student")
COMPRESS_COLS = ("accuracy", "size_bytes", "latency_p50_ms", "max_abs_dlogit")


def _compression(model, spec: dict, x: torch.Tensor, y: torch.Tensor, cfg: Params, data: Path) -> dict[str, float]:
    """fp32 / int8 / ONNX forms of the student; onnxruntime int8 calibrated on the first training samples
    and judged (faster and within the accuracy budget, or not chosen)."""
    from kdflow.compress import compare, int8_verdict

    c = cfg.compress
    if not (c.int8 or c.onnx):
        return {}
    calib = torch.from_numpy(load_split(data, "train")["x"][:c.calibration_samples]) if c.int8 and c.onnx else None
    res = compare(model, spec["input_shape"], x, y, cfg.evaluate.latency_repeats, c.int8, c.onnx, c.opset, calib)
    if "onnx_int8.accuracy" in res:
        res["onnx_int8.chosen"] = float(int8_verdict(res, c.int8_accuracy_budget)[0])
    return {f"compress.{k}": v for k, v in res.items()}


def _generations(inputs: dict[str, Path]) -> Path | None:
    from kdflow.stages.born_again import SUMMARY

    if inputs.get("generations"):
        return Path(inputs["generations"])
    parent = Path(inputs["student"]).parent
    return parent if (parent / SUMMARY).is_file() else None


def _born_again(gen_dir: Path, info: dict, x: torch.Tensor, y: torch.Tensor, cfg: Params) -> dict[str, float]:
    from kdflow.stages.born_again import generation_dirs

    out: dict[str, float] = {}
    parent_pred = None
    for k, path in generation_dirs(gen_dir):
        model, spec = load_model(path)
        check_classes(spec, info, f"generation {path}")
        logits = M.predict(model, x)
        q = M.quality(logits, y, cfg.evaluate.calibration_bins)
        out |= {f"born_again.gen{k}.{m}": q[m] for m in ("accuracy", "nll", "ece")}
        if parent_pred is not None:
            out[f"born_again.gen{k}.parent_agreement"] = float((logits.argmax(1) == parent_pred).float().mean())
            out[f"born_again.gen{k}.gain_over_parent"] = q["accuracy"] - out[f"born_again.gen{k - 1}.accuracy"]
        parent_pred = logits.argmax(1)
    return out


def _curves(model_dir: Path) -> list[dict]:
    f = model_dir / "curves.csv"
    if not f.is_file():
        return []
    rows = [r for r in csv.DictReader(io.StringIO(f.read_text())) if r.get("val_acc")]
    return [{"epoch": int(r["epoch"]), "val_acc": float(r["val_acc"]), "val_loss": float(r["val_loss"])}
            for r in rows]


def evaluate_model(model, spec: dict, x: torch.Tensor, y: torch.Tensor, cfg: Params,
                   run=None) -> tuple[dict, torch.Tensor]:
    """Quality of one model; `run` (an inference engine, default eager) gives the test logits. Its cost is
    measured for all models together (`perf.costs`)."""
    e = cfg.evaluate
    std = model.std.detach()
    mean = model.mean.detach()
    logits = run.predict(x) if run is not None else M.predict(model, x)
    out = M.quality(logits, y, e.calibration_bins)
    for s in e.noise_sigma:
        out[f"noise_acc_{s:g}"] = M.noise_accuracy(model, x, y, s, std)
    if getattr(model.net, "differentiable", True):  # an ONNX teacher has no gradients: no FGSM row
        for eps in e.fgsm_eps:
            out[f"fgsm_acc_{eps:g}"] = M.fgsm_accuracy(model, x, y, eps, std)
    out["ood_auroc"] = M.ood_auroc(model, x, M.ood_inputs(e.ood, e.ood_samples, spec["input_shape"], mean, std))
    out["params"] = spec["params"]
    out["size_bytes"] = spec["size_bytes"]
    probs = logits.softmax(1)
    out["confidence_mean"] = float(probs.max(1).values.mean())
    return out, logits


def evaluate_text_model(model, spec: dict, x: torch.Tensor, y: torch.Tensor, cfg: Params, data: Path,
                        info: dict) -> tuple[dict, torch.Tensor]:
    """Text: quality + latency/throughput on real test sentences (no pixel noise, FGSM or OOD rows)."""
    from kdflow.evaluation import text_cost

    e = cfg.evaluate
    with torch.inference_mode():
        logits = M.predict(model, x, batch_size=256)
    out = M.quality(logits, y, e.calibration_bins)
    out.update(text_cost.cost(model, data, info, e.latency_repeats, e.throughput_batch))
    out["params"], out["size_bytes"] = spec["params"], spec["size_bytes"]
    out["confidence_mean"] = float(logits.softmax(1).max(1).values.mean())
    return out, logits


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    data = need(inputs, "data", "evaluate")
    info = load_info(data)
    out_dir = need(outputs, "metrics", "evaluate")
    test = load_split(data, "test")
    x, y = torch.from_numpy(test["x"]), torch.from_numpy(test["y"])
    # a student with its own vocabulary (and its no-KD twin) reads the same test sentences in its own ids
    s_data = for_student(data)
    s_x = torch.from_numpy(load_split(s_data, "test")["x"]) if s_data != data else x
    torch.manual_seed(cfg.seed)
    flat: dict[str, float] = {}
    logits, curves, specs, models, engines = {}, {}, {}, {}, {}
    ticker = Ticker("evaluate", total=len(ROLES), unit="models", every=0)
    with tracking.stage_run(cfg, "evaluate", cfg.evaluate.model_dump(mode="json"), info["hash"]):
        for role in ROLES:
            path = need(inputs, role, "evaluate")
            model, spec = load_model(path)
            check_classes(spec, info, f"{role} {path}")
            engines[role] = engine(model, spec, cfg.inference.backend, threads=cfg.evaluate.threads)
            if info.get("modality") == "text":
                d = data if role == "teacher" else s_data
                res, logits[role] = evaluate_text_model(model, spec, x if d == data else s_x, y, cfg, d,
                                                        load_info(d))
            else:
                res, logits[role] = evaluate_model(model, spec, x, y, cfg, engines[role])
            models[role] = model
            flat.update({f"{role}.{k}": v for k, v in res.items()})
            curves[role], specs[role] = _curves(path), spec
            ticker.update(1, role)
        e = cfg.evaluate
        if info.get("modality") != "text":  # text models timed on real sentences in evaluate_text_model
            for role, c in perf.costs(engines, models, specs["student"]["input_shape"], e.latency_repeats,
                                      e.throughput_batch, e.threads).items():
                flat.update({f"{role}.{k}": v for k, v in c.items()})
        pred_t = logits["teacher"].argmax(1)
        pred_s = logits["student"].argmax(1)
        flat.update(ratios(flat, "accuracy"))
        flat.update({
            "teacher_agreement": float((pred_t == pred_s).float().mean()),
            "baseline_teacher_agreement": float((pred_t == logits["baseline"].argmax(1)).float().mean()),
        })
        share = torch.bincount(pred_s, minlength=info["num_classes"]).float() / len(pred_s)
        flat.update({f"student.class_share.{k}": float(v) for k, v in enumerate(share)})
        if info.get("modality") != "text":  # int8/ONNX comparison feeds float inputs
            flat.update(_compression(models["student"], specs["student"], x, y, cfg, data))
        gen_dir = _generations(inputs)
        if gen_dir is not None:
            flat.update(_born_again(gen_dir, info, s_x, y, cfg))
        tracking.log_metrics(flat)
        with atomic_dir(out_dir) as tmp:
            _write(tmp, cfg, info, flat, logits, y, curves, specs)
    return {k: flat[k] for k in ("teacher.accuracy", "baseline.accuracy", "student.accuracy", "retention",
                                 "kd_gain", "compression", "speedup")}


def _write(tmp: Path, cfg: Params, info: dict, flat: dict, logits: dict, y: torch.Tensor, curves: dict,
           specs: dict[str, dict]) -> None:
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
    rows = [{"model": r, **{k: flat.get(f"{r}.{k}") for k in ("accuracy", "macro_f1", "nll", "ece", "ood_auroc",
                                                         "params", "flops", "latency_p50_ms", "latency_p95_ms",
                                                         "throughput_per_s")}} for r in ROLES]
    robust = [{"model": r, **{k.split(".", 1)[1]: v for k, v in flat.items()
                              if k.startswith(f"{r}.") and ("noise_acc" in k or "fgsm_acc" in k)}} for r in ROLES]
    derived = [{k: flat[k] for k in ("retention", "kd_gain", "compression", "speedup", "throughput_ratio",
                                     "teacher_agreement")}]
    tables = [("Test split", report.table_html(rows, list(rows[0]))),
              ("Robustness", report.table_html(robust, list(robust[0]))),
              ("Distillation", report.table_html(derived, list(derived[0]))),
              report.models_section(specs)]
    forms = [f for f in ("fp32", "int8", "onnx", "onnx_int8") if f"compress.{f}.accuracy" in flat]
    if forms:
        from kdflow.compress import int8_verdict

        cols = (*COMPRESS_COLS, "batch_ms_per_sample")
        comp = [{"student": f, **{c: flat.get(f"compress.{f}.{c}") for c in cols}} for f in forms]
        res = {k.removeprefix("compress."): v for k, v in flat.items() if k.startswith("compress.")}
        title = "Compression (student, test split)"
        if "onnx_int8.accuracy" in res:
            title += " — " + int8_verdict(res, cfg.compress.int8_accuracy_budget)[1]
        tables.append((title, report.table_html(comp, ["student", *cols])))
    gens = sorted({int(k.split(".")[1][3:]) for k in flat if k.startswith("born_again.gen")})
    if gens:
        cols = ("accuracy", "nll", "ece", "gain_over_parent", "parent_agreement")
        ba = [{"generation": g, **{c: flat.get(f"born_again.gen{g}.{c}") for c in cols}} for g in gens]
        tables.append(("Born-again generations (test split)", report.table_html(ba, ["generation", *cols])))
    report.write_report(
        tmp / "report.html", f"kdflow report — {info['source']}", tables,
        [("confusion", report.confusion_png(M.confusion(logits["student"], y), classes, "student confusion")),
         ("reliability", report.reliability_png(rel)), ("curves", report.curves_png(curves))],
        verdict=verdict(flat, (logits["student"].argmax(1) == y).numpy(), (logits["baseline"].argmax(1) == y).numpy()),
    )
    np.savetxt(plots / "confusion_matrix.txt", M.confusion(logits["student"], y), fmt="%d")
