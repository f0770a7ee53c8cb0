"""A self-contained `report.html`: tables plus PNG figures embedded as data URIs (no CDN)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def confusion_png(cm: np.ndarray, classes: list[str], title: str) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title=title)
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
    return _png(fig)


def reliability_png(rows: dict[str, list[dict]]) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for role, pts in rows.items():
        ax.plot([p["confidence"] for p in pts], [p["accuracy"] for p in pts], "o-", label=role, ms=3)
    ax.set(xlabel="confidence", ylabel="accuracy", title="reliability")
    ax.legend()
    return _png(fig)


def curves_png(curves: dict[str, list[dict]]) -> str:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for role, pts in curves.items():
        if pts:
            ax.plot([p["epoch"] for p in pts], [p["val_acc"] for p in pts], label=role)
    ax.set(xlabel="epoch", ylabel="val accuracy", title="training curves")
    ax.legend()
    return _png(fig)


# metric key -> the column header people read (units in parentheses)
HEADERS = {
    "accuracy": "accuracy", "macro_f1": "macro-F1", "nll": "NLL (nats)", "ece": "ECE", "ood_auroc": "OOD AUROC",
    "params": "parameters", "flops": "FLOPs / sample", "latency_p50_ms": "latency p50 (ms, batch 1)",
    "latency_p95_ms": "latency p95 (ms, batch 1)", "throughput_per_s": "throughput (samples/s)",
    "retention": "retention (student / teacher acc.)", "kd_gain": "KD gain (acc. points ÷ 100)",
    "compression": "compression (× fewer params)", "speedup": "speed-up (×, batch 1)",
    "throughput_ratio": "throughput ratio (×)", "teacher_agreement": "agreement with teacher",
    "gain_over_parent": "gain over parent", "parent_agreement": "agreement with parent",
}


def provenance(specs: dict[str, dict]) -> list[dict]:
    """Where each model came from: trained here, or imported/initialised from a source (URI + file sha256)."""
    rows = []
    for role, spec in specs.items():
        src = spec.get("source") or spec.get("init_from") or {}
        sha = ", ".join(f"{k} {v[:16]}…" for k, v in sorted(src.get("sha256", {}).items()))
        rows.append({"model": role, "architecture": spec["name"],
                     "origin": "imported" if spec.get("source") else "initialised from" if src else "trained",
                     "source": src.get("uri", ""), "sha256": sha})
    return rows


def models_section(specs: dict[str, dict]) -> tuple[str, str]:
    """The report's "Models" table: each model's architecture and origin."""
    return "Models", table_html(provenance(specs), ["model", "architecture", "origin", "source", "sha256"])


def table_html(rows: list[dict], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(HEADERS.get(c, c.replace('_', ' ')))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"  # throughput, FLOPs: 437,812 rather than 4.378e+05
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_report(path: Path, title: str, tables: list[tuple[str, str]], images: list[tuple[str, str]],
                 verdict: str = "") -> None:
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
             "img{margin:.5em;border:1px solid #eee}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"]
    if verdict:  # the answer first, the tables after
        parts.append(f"<p class='verdict'><strong>{html.escape(verdict)}</strong></p>")
    parts += [f"<h2>{html.escape(h)}</h2>{t}" for h, t in tables]
    parts += [f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>" for alt, b64 in images]
    path.write_text("".join(parts) + "</body></html>")
