"""Evaluate for `task: embedding`: teacher, untrained student (baseline) and distilled student, side by side.

- `cosine_to_teacher`: mean cosine between a model's and the teacher's embeddings of the test split (held-out
  text: distillation never sees it);
- `probe_accuracy`: a linear probe (scikit-learn LogisticRegression on standardized frozen embeddings) fitted on
  the labeled train split, scored on the test split — the same probe recipe for every model;
- the CPU cost of `kdflow.evaluation.text_cost` (latency, throughput with tokenization, FLOPs).
Derived: `retention` (student probe / teacher probe), `kd_gain` (student probe − baseline probe, points as a
fraction), `cosine_gain`, `compression`, `speedup`, `throughput_ratio`, `teacher_agreement` (the two probes'
predictions agree).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from kdflow import tracking
from kdflow.config import Params
from kdflow.data.reader import load_info
from kdflow.data.tokenized import TokenBatches, read_split
from kdflow.errors import KdflowError
from kdflow.evaluation import report, text_cost
from kdflow.evaluation.show import ratios
from kdflow.io import atomic_dir, write_json
from kdflow.models import load_model
from kdflow.progress import Ticker
from kdflow.stages.common import check_classes, need

ROLES = ("teacher", "baseline", "student")


@torch.inference_mode()
def embed_split(model: torch.nn.Module, data: Path, info: dict, split: str, batch_size: int = 128,
                limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings float32 (N, D), labels) of a split's first `limit` samples; batches of similar length (sorted),
    each padded to its own longest, so short sentences do not pay for long ones."""
    s = read_split(data, split)
    n = len(s["y"]) if limit is None else min(limit, len(s["y"]))
    s = {**s, "y": s["y"][:n], "id": s["id"][:n], "offsets": s["offsets"][: n + 1]}
    ds = TokenBatches([s], info["tokenizer"]["pad_id"])
    order = np.argsort(np.diff(s["offsets"]), kind="stable")
    model.eval()
    out = None
    for i in range(0, n, batch_size):
        rows = order[i:i + batch_size]
        e = model(ds[torch.from_numpy(rows)][0]).float().numpy()
        if out is None:
            out = np.zeros((n, e.shape[1]), np.float32)
        out[rows] = e
    return (out if out is not None else np.zeros((0, 0), np.float32)), s["y"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    na = np.linalg.norm(a, axis=1).clip(1e-12)
    nb = np.linalg.norm(b, axis=1).clip(1e-12)
    return (a * b).sum(1) / (na * nb)


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
          c: float = 1.0, seed: int = 0) -> tuple[float, np.ndarray]:
    """Linear-probe accuracy on the test split and its predictions (standardize → logistic regression)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labeled = train_y >= 0
    if len(np.unique(train_y[labeled])) < 2:
        raise KdflowError("the linear probe needs at least two classes in the labeled train split")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
    clf.fit(train_x[labeled], train_y[labeled])
    pred = clf.predict(test_x)
    return float((pred == test_y).mean()), pred


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    data = need(inputs, "data", "evaluate")
    info = load_info(data)
    out_dir = need(outputs, "metrics", "evaluate")
    e = cfg.evaluate
    torch.manual_seed(cfg.seed)
    flat: dict[str, float] = {}
    emb, preds, specs = {}, {}, {}
    ticker = Ticker("evaluate (embeddings)", total=len(ROLES), unit="models", every=0)
    with tracking.stage_run(cfg, "evaluate", e.model_dump(mode="json"), info["hash"]):
        for role in ROLES:
            path = need(inputs, role, "evaluate")
            model, spec = load_model(path)
            check_classes(spec, info, f"{role} {path}")
            if spec.get("task") != "embedding":
                raise KdflowError(f"{role} {path} is a classifier but the teacher is a sentence encoder: "
                                  "evaluate compares models of one task")
            with torch.inference_mode():
                train_x, train_y = embed_split(model, data, info, "train", limit=e.probe_train_samples)
                test_x, test_y = embed_split(model, data, info, "test")
            emb[role] = test_x
            acc, preds[role] = probe(train_x, train_y, test_x, test_y, e.probe_c, cfg.seed)
            res = {"probe_accuracy": acc, "embedding_dim": spec["embedding_dim"], "params": spec["params"],
                   "size_bytes": spec["size_bytes"]}
            if role != "teacher" and test_x.shape[1] == emb["teacher"].shape[1]:
                cos = cosines(test_x, emb["teacher"])
                res |= {"cosine_to_teacher": float(cos.mean()), "cosine_to_teacher_p10": float(np.percentile(cos, 10))}
            res |= text_cost.cost(model, data, info, e.latency_repeats, e.throughput_batch)
            flat.update({f"{role}.{k}": v for k, v in res.items()})
            specs[role] = spec
            ticker.update(1, role)
        flat.update(ratios(flat, "probe_accuracy"))
        flat.update({
            "teacher_agreement": float((preds["teacher"] == preds["student"]).mean()),
            "baseline_teacher_agreement": float((preds["teacher"] == preds["baseline"]).mean()),
        })
        if "baseline.cosine_to_teacher" in flat:
            flat["cosine_gain"] = flat["student.cosine_to_teacher"] - flat["baseline.cosine_to_teacher"]
        tracking.log_metrics(flat)
        with atomic_dir(out_dir) as tmp:
            _write(tmp, info, flat, emb, specs)
    keys = ("teacher.probe_accuracy", "baseline.probe_accuracy", "student.probe_accuracy",
            "student.cosine_to_teacher", "retention", "kd_gain", "compression", "speedup")
    return {k: flat[k] for k in keys if k in flat}


def verdict(m: dict) -> str:
    return (f"Student reaches a mean cosine of {m['student.cosine_to_teacher']:.3f} to the teacher's embeddings on "
            f"held-out text and keeps {100 * m['retention']:.1f} % of its linear-probe accuracy "
            f"({100 * m['student.probe_accuracy']:.2f} % vs {100 * m['teacher.probe_accuracy']:.2f} %) at "
            f"1/{m['compression']:.1f} of its parameters, {m['speedup']:.1f}× faster at batch 1 on CPU; the untrained "
            f"student's probe: {100 * m['baseline.probe_accuracy']:.2f} %")


def _write(tmp: Path, info: dict, flat: dict, emb: dict, specs: dict) -> None:
    write_json(tmp / "metrics.json", flat)
    plots = tmp / "plots"
    plots.mkdir()
    hist = {}
    for role in ("baseline", "student"):
        if emb[role].shape[1] == emb["teacher"].shape[1]:
            counts, edges = np.histogram(cosines(emb[role], emb["teacher"]), bins=20, range=(-1, 1))
            hist[role] = [{"cosine_low": float(lo), "count": int(c)} for lo, c in zip(edges[:-1], counts)]
    (plots / "cosine_hist.json").write_text(json.dumps(
        [{"role": r, **p} for r, pts in hist.items() for p in pts], indent=1))
    cols = ("probe_accuracy", "cosine_to_teacher", "cosine_to_teacher_p10", "embedding_dim", "params",
            "latency_p50_ms", "throughput_per_s", "flops")
    rows = [{"model": r, **{k: flat.get(f"{r}.{k}") for k in cols}} for r in ROLES]
    derived = [{k: flat.get(k) for k in ("retention", "kd_gain", "cosine_gain", "compression", "speedup",
                                         "throughput_ratio", "teacher_agreement")}]
    title = "Test split (embeddings; linear probe fitted on the train split)"
    tables = [(title, report.table_html(rows, ["model", *cols])),
              ("Distillation", report.table_html(derived, list(derived[0]))),
              report.models_section(specs)]
    report.write_report(tmp / "report.html", f"kdflow report — {info['source']} (sentence embeddings)", tables, [],
                        verdict=verdict(flat))
