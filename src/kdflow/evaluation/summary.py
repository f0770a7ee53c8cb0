"""`kdflow show`: the evaluate stage's metrics as a markdown table for people."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kdflow.errors import KdflowError
from kdflow.io import read_json

ROWS = (("teacher", "teacher"), ("baseline", "baseline (no KD)"), ("student", "distilled student"))


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


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kdflow show", description="print the evaluation table")
    p.add_argument("metrics", nargs="?", default="metrics", type=Path, help="metrics dir or metrics.json")
    args = p.parse_args(argv)
    path = args.metrics / "metrics.json" if args.metrics.is_dir() else args.metrics
    try:
        m = read_json(path, "metrics")
        print(table(m))
    except (KdflowError, KeyError) as exc:
        print(f"kdflow show: error: {exc}", file=sys.stderr)
        return 2
    report = path.parent / "report.html"
    if report.is_file():
        print(f"\nreport: {report.resolve()}")
    return 0
