"""`kdflow show`: the evaluate stage's metrics as a markdown table for people."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kdflow.errors import KdflowError
from kdflow.io import read_json

ROWS = (("teacher", "teacher"), ("baseline", "baseline (no KD)"), ("student", "distilled student"))


def ratios(flat: dict, quality: str) -> dict:
    """Student vs teacher / baseline from the per-role metrics: `quality` names the accuracy-like metric
    (`accuracy`, or `probe_accuracy` for sentence encoders)."""
    t, b, s = (flat[f"{r}.{quality}"] for r in ("teacher", "baseline", "student"))
    return {"retention": s / t if t else 0.0, "kd_gain": s - b,
            "compression": flat["teacher.params"] / flat["student.params"],
            "speedup": flat["teacher.latency_p50_ms"] / flat["student.latency_p50_ms"],
            "throughput_ratio": flat["student.throughput_per_s"] / flat["teacher.throughput_per_s"]}


def table(m: dict) -> str:
    lines = ["| model | test acc | macro-F1 | ECE | params | latency p50 (ms) | throughput (/s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for key, label in ROWS:
        lines.append(f"| {label} | {m[f'{key}.accuracy']:.4f} | {m[f'{key}.macro_f1']:.4f} | {m[f'{key}.ece']:.4f} | "
                     f"{int(m[f'{key}.params']):,} | {m[f'{key}.latency_p50_ms']:.3f} | "
                     f"{m[f'{key}.throughput_per_s']:,.0f} |")
    lines += ["", f"retention {m['retention']:.4f} · KD gain {m['kd_gain']:+.4f} · compression "
              f"{m['compression']:.1f}× · batch-1 speedup {m['speedup']:.1f}× · teacher agreement "
              f"{m['teacher_agreement']:.4f}"]
    return "\n".join(lines)


def verdict(m: dict, student_correct=None, baseline_correct=None) -> str:
    """The report's first line: what the student keeps of the teacher, at what size and speed, and what KD
    adds over the same student without it — with a 95 % CI from the paired per-sample difference when the
    per-sample correctness (bool arrays over the test split) is given."""
    line = (f"Student keeps {100 * m['retention']:.1f} % of the teacher's accuracy "
            f"({100 * m['student.accuracy']:.2f} % vs {100 * m['teacher.accuracy']:.2f} %) at "
            f"1/{m['compression']:.0f} of its parameters, {m['speedup']:.1f}× faster at batch 1 on CPU; "
            f"KD adds {100 * m['kd_gain']:+.2f} points over the same student without KD")
    if student_correct is not None and baseline_correct is not None:
        import numpy as np

        d = np.asarray(student_correct, np.float64) - np.asarray(baseline_correct, np.float64)
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        lo, hi = 100 * (d.mean() - half), 100 * (d.mean() + half)
        sure = "significant" if lo > 0 or hi < 0 else "not significant"
        line += f" (95 % CI {lo:+.2f} to {hi:+.2f}, {sure}, {len(d):,} test samples)"
    return line + "."


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kdflow show", description="print the evaluation table")
    p.add_argument("metrics", nargs="?", default="metrics", type=Path, help="metrics dir or metrics.json")
    args = p.parse_args(argv)
    path = args.metrics / "metrics.json" if args.metrics.is_dir() else args.metrics
    try:
        m = read_json(path, "metrics")
        print(verdict(m) + "\n")
        print(table(m))
    except (KdflowError, KeyError) as exc:
        print(f"kdflow show: error: {exc}", file=sys.stderr)
        return 2
    report = path.parent / "report.html"
    if report.is_file():
        print(f"\nreport: {report.resolve()}")
    return 0
