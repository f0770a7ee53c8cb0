"""Quality: teacher vs no-KD baseline vs KD student, per data set, mean ± std over seeds.

    python benchmarks/quality.py                              # mnist1d, mnist1d low-label, digits
    python benchmarks/quality.py --data imagefolder:DIR       # your data (profile: digits; --profile to change)
    python benchmarks/quality.py --profile hinton [--data idx:IMAGES,LABELS] [--epochs N]

Every model is selected on the validation split (best-on-val checkpoint); the test split is read once,
by the evaluate stage. Hinton mode reproduces Hinton et al. 2015 §3 and reports test errors and the
share of the baseline→teacher error gap that distillation closes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.cli import add_common_args, size_of  # noqa: E402
from harness.env import ROOT, THREADS, TMP, cleanup, fresh_dir, setup  # noqa: E402
from harness.fixtures import digits28  # noqa: E402
from harness.profiles import ROLES_TRAIN, load_profile, quiet_training, scale_epochs, with_overrides  # noqa: E402
from harness.results import write_result  # noqa: E402
from harness.stages import pipeline  # noqa: E402
from harness.stats import mean_std, pm  # noqa: E402
from harness.tables import table, verdict  # noqa: E402

SETS = {  # name: profile (benchmarks/profiles/<profile>.yaml; default = params.yaml)
    "mnist1d": "mnist1d",  # params.yaml with the distillation tuned on val
    "lowlabel": "lowlabel",
    "digits": "digits",
}
SIZES = {  # overrides by run size; `epochs` scales every training section
    "full": {"seeds": 3, "epochs": 1.0, "over": {}},
    "quick": {"seeds": 1, "epochs": 0.1, "over": {"data.transfer_size": 10_000, "evaluate.latency_repeats": 50}},
    "dry": {"seeds": 1, "epochs": 0.0, "over": {"data.num_samples": 600, "data.val_size": 100, "data.test_size": 100,
                                                "data.train_limit": 200, "data.transfer_size": 200,
                                                "evaluate.latency_repeats": 10, "evaluate.ood_samples": 50}},
}
SHARED = ("data", "teacher", "soft_targets")  # built once per data set, by seed 0
CACHE = TMP / "cache"  # shared artifacts by content hash (benchmarks/results/tmp is gitignored)
GENERATED_ONLY = ("data.num_samples", "data.transfer_size")  # sizes of generated (mnist1d) data only
KEYS = ("teacher.accuracy", "baseline.accuracy", "student.accuracy", "teacher.params", "student.params",
        "retention", "kd_gain", "compression", "speedup", "throughput_ratio")


VAL_OF = {"teacher": "train_teacher", "baseline": "train_baseline", "student": "distill"}


def sized(raw: dict, size: str, epochs: int | None) -> dict:
    s = SIZES[size]
    generated = raw.get("data", {}).get("source", "mnist1d") == "mnist1d"
    over = {k: v for k, v in s["over"].items() if generated or k not in GENERATED_ONLY}
    raw = with_overrides(raw, over)
    if s["epochs"] != 1.0:
        raw = scale_epochs(raw, s["epochs"])
    if epochs is not None:
        raw = with_overrides(raw, {f"{sec}.epochs": epochs for sec in ROLES_TRAIN})
    return quiet_training(raw)


def run_set(raw: dict, seeds: int, work: Path, jobs: int = 1, threads: int = THREADS, one_baseline: bool = False,
            cache: Path | None = CACHE) -> dict:
    """The split, the teacher and its soft targets are built once (seed 0); every seed trains a baseline and a
    student on them.

    One teacher per data set and students over seeds, as KD papers report (e.g. Tian et al. 2020): the
    question is what a student gains from a given teacher, and a teacher per seed would triple the cost.
    Seeds run `jobs` at a time in worker processes with threads/jobs torch threads each: small models
    use a second core better as a second process than as a second thread. With a `cache`, the split,
    teacher and soft targets of a generated data set are kept under the hash of everything that makes them
    (`shared_key`) and reused by the next run. `one_baseline`: one baseline (seed 0, built with the teacher)
    serves every seed (student-only searches: the KD gain is then against that one baseline).
    """
    t0 = time.perf_counter()
    seed0 = with_overrides(raw, {"seed": 0})
    key = shared_key(seed0) if cache is not None and cacheable(seed0) else None
    shared = (cached(cache, key) if key else None) or {}
    from_cache = bool(shared)
    build = ("prepare", "train_teacher", "soft_targets", *(("train_baseline",) if one_baseline else ()))
    res = pipeline(seed0, fresh_dir(work, "build"), shared, stages=build)
    keep = fresh_dir(work, "shared")
    built = {k: Path(shutil.move(res["paths"][k], keep / k)) for k in (*SHARED, "baseline")
             if k not in shared and res["paths"][k].exists()}
    if key and not from_cache:
        built |= store(cache, key, {k: v for k, v in built.items() if k in SHARED})
    shared |= built
    cleanup(work / "build")
    build_seconds = {k: round(v["wall_seconds"], 1) for k, v in res.items() if "wall_seconds" in v}
    if jobs > 1 and seeds > 1:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        with ProcessPoolExecutor(min(jobs, seeds), mp_context=ctx) as pool:
            futures = {pool.submit(_seed_run, raw, seed, work, shared, max(1, threads // jobs)): seed
                       for seed in range(seeds)}
            done = {futures[f]: _said(futures[f], f.result()) for f in as_completed(futures)}
        runs = [done[seed] for seed in range(seeds)]
    else:
        runs = [_said(seed, _seed_run(raw, seed, work, shared, None)) for seed in range(seeds)]
    return {"runs": runs, "seconds": time.perf_counter() - t0, "build_seconds": build_seconds, "jobs": jobs,
            "one_baseline": one_baseline, "shared": {"key": key, "from_cache": from_cache}}


def _said(seed: int, row: dict) -> dict:
    """Each seed's accuracies as soon as it ends: a long run that is stopped still told what it found."""
    val = row.get("student.val_accuracy")
    print(f"[quality] seed {seed}: KD student {row['student.accuracy']:.2%} test"
          + (f", {val:.2%} val" if val is not None else "") + f"; baseline {row['baseline.accuracy']:.2%} test",
          flush=True)
    return row


def cacheable(raw: dict) -> bool:
    """Only generated data: a file source could change under the same path, and its hash would cost a read."""
    return raw.get("data", {}).get("source", "mnist1d") in ("mnist1d", "digits")


def shared_key(raw: dict) -> str:
    """Hash of what the split, teacher and soft targets depend on: their config sections, the seed, the
    kdflow source code and torch's version (a code change is a cache miss, never a stale teacher)."""
    import hashlib
    import json

    import torch

    from kdflow.config import validate

    cfg = validate(raw)
    teacher = cfg.teacher.model_dump(mode="json")
    teacher.get("train", {}).pop("progress_bar", None)  # how training is shown, not what it makes
    code = hashlib.sha256()
    src = ROOT / "src" / "kdflow"
    for f in sorted(src.rglob("*.py")):
        code.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes())
    doc = {"seed": cfg.seed, "data": cfg.data.model_dump(mode="json"), "teacher": teacher,
           "soft_targets": cfg.soft_targets.model_dump(mode="json"), "inference": cfg.inference.model_dump(mode="json"),
           "code": code.hexdigest(), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def cached(cache: Path, key: str) -> dict[str, Path] | None:
    entry = cache / key
    return {k: entry / k for k in SHARED if (entry / k).exists()} if entry.is_dir() else None


def store(cache: Path, key: str, shared: dict[str, Path]) -> dict[str, Path]:
    """Move freshly built shared artifacts into the cache (a temp name, then one rename: no half entries)."""
    partial = fresh_dir(cache, f".{key}.{os.getpid()}")
    for k, path in shared.items():
        shutil.move(path, partial / k)
    try:
        partial.rename(cache / key)
    except OSError:  # another run stored the same key meanwhile: theirs is as good
        cleanup(partial)
    return cached(cache, key) or {}


def _seed_run(raw: dict, seed: int, work: Path, shared: dict[str, Path], threads: int | None) -> dict:
    """Baseline and student of one seed on the shared data/teacher/soft targets (in a worker: `threads`)."""
    scratch = setup(threads) if threads else None
    res = pipeline(with_overrides(raw, {"seed": seed}), fresh_dir(work, f"seed{seed}"), shared)
    cleanup(work / f"seed{seed}")
    if scratch is not None:  # a pool worker ends without atexit: drop its scratch and MLflow store here
        cleanup(scratch)
        Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).unlink(missing_ok=True)
    return _row(res, shared)


def _row(res: dict, shared: dict[str, Path]) -> dict:
    m = res["metrics"]
    # best-on-validation accuracy of each trained model: what profiles are tuned on (never the test split)
    val = {f"{role}.val_accuracy": res[stage_]["best_val_acc"] for role, stage_ in VAL_OF.items() if stage_ in res}
    return {**{k: m[k] for k in KEYS}, **val, "test_samples": _test_count(shared["data"]),
            "seconds": {k: round(v["wall_seconds"], 1) for k, v in res.items() if "wall_seconds" in v},
            "cpu_seconds": {k: round(v["cpu_seconds"], 1) for k, v in res.items() if "cpu_seconds" in v}}


def _test_count(data: Path) -> int:
    from kdflow.data.reader import load_info

    return load_info(data)["counts"]["test"]


def col(runs: list[dict], key: str) -> list[float]:
    return [r[key] for r in runs]


def quality_table(sets: dict[str, dict]) -> str:
    rows = []
    for name, s in sets.items():
        r = s["runs"]
        rows.append((name, pm(col(r, "teacher.accuracy")[:1], 100), pm(col(r, "baseline.accuracy"), 100),
                     pm(col(r, "student.accuracy"), 100),
                     pm([x.get("student.val_accuracy") or float("nan") for x in r], 100), f"{r[0]['teacher.params']:,}",
                     f"{r[0]['student.params']:,}",
                     pm(col(r, "retention"), 100, 1), pm(col(r, "kd_gain"), 100), f"{r[0]['compression']:.0f}×",
                     pm(col(r, "speedup"), 1, 1) + "×", pm(col(r, "throughput_ratio"), 1, 1) + "×",
                     f"{len(r)}", f"{s['seconds'] / 60:.1f}"))
    return table(["data", "teacher acc %", "baseline acc %", "KD student acc %", "KD student val acc %",
                  "teacher params",
                    "student params", "retention %", "KD gain (pts)", "compression", "latency speed-up (b=1)",
                    "throughput × (b=256)", "seeds", "min"], rows)


def set_notes(name: str, s: dict) -> str:
    notes = []
    if s.get("shared", {}).get("from_cache"):
        notes.append(f"split, teacher and soft targets reused from the cache (key {s['shared']['key']}: same config, "
                     "kdflow code and torch), so its minutes exclude the teacher's training")
    if s.get("one_baseline"):
        notes.append("one baseline (seed 0) for every seed")
    return f" {name}: {'; '.join(notes)}." if notes else ""


def targets(sets: dict[str, dict], kinds: dict[str, str]) -> list[tuple[str, str, str]]:
    """The issue's targets, checked on the means over seeds."""
    out = []
    for name, s in sets.items():
        m = {k: mean_std(col(s["runs"], k))[0] for k in KEYS}
        if kinds[name] == "image":
            ok = m["retention"] >= 0.99 and m["compression"] >= 20 and m["throughput_ratio"] >= 5
            out.append((name, "image: retention ≥ 99 %, params ≤ 1/20, throughput ≥ 5×",
                        f"{m['retention']:.1%}, 1/{m['compression']:.0f}, {m['throughput_ratio']:.1f}× → "
                        f"{verdict(ok)}"))
        if name == "mnist1d":
            ok = m["student.params"] <= 5210 and m["student.accuracy"] >= 0.985 and m["kd_gain"] >= 0.01
            out.append((name, "student ≤ 5,210 params, ≥ 98.5 %, ≥ +1 pt over augmentation alone",
                        f"{m['student.params']:,.0f}, {m['student.accuracy']:.2%}, {100 * m['kd_gain']:+.2f} pts → "
                        f"{verdict(ok)}"))
    return out


def hinton_table(s: dict) -> tuple[str, float]:
    r = s["runs"]
    n = r[0]["test_samples"]
    roles = ("teacher", "baseline", "student")
    errs = {role: [round(n * (1 - x)) for x in col(r, f"{role}.accuracy")] for role in roles}
    errs["teacher"] = errs["teacher"][:1]  # one teacher, shared by the seeds
    mean = {k: mean_std(v)[0] for k, v in errs.items()}
    gap = mean["baseline"] - mean["teacher"]
    closed = (mean["baseline"] - mean["student"]) / gap if gap > 0 else float("nan")
    rows = [("teacher", "MLP 1200-1200, dropout, ±2 px jitter", f"{r[0]['teacher.params']:,}"),
            ("baseline", "MLP 800-800, no regularization", f"{r[0]['student.params']:,}"),
            ("distilled", "MLP 800-800, soft targets at T = 20", f"{r[0]['student.params']:,}")]
    body = [(*row, pm(errs[role], 1, 1), pm([e / n for e in errs[role]], 100))
            for row, role in zip(rows, roles)]
    md = table(["model", "architecture", "params", f"test errors (of {n:,})", "error %"], body)
    return md + (f"\n\nError gap closed by distillation: **{closed:.0%}** (Hinton 2015: 91 %; target ≥ 80 %: "
                 f"{verdict(closed >= 0.8)}); one teacher, baseline and student over {len(r)} seeds; "
                 f"{s['seconds'] / 60:.1f} min"), closed


def kind_of(raw_source: str) -> str:
    return "signal" if raw_source.startswith("mnist1d") else "image"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--sets", help=f"built-in data sets, comma-separated ({', '.join(SETS)}); default: all, "
                                  "unless --data or --profile is given")
    p.add_argument("--data", action="append", default=[], metavar="SOURCE",
                   help="your data as a data.source (imagefolder:DIR, idx:IMAGES,LABELS, npz:FILE, ...); repeatable")
    p.add_argument("--profile", help="params profile for --data (default: digits), or `hinton`")
    p.add_argument("--seeds", type=int, help="training seeds (default: 3; quick: 1)")
    p.add_argument("--epochs", type=int, help="epochs of every training stage (default: the profile's)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    p.add_argument("--threads", type=int, default=THREADS)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="seeds 1.. trained in parallel processes (threads split between them)")
    p.add_argument("--one-baseline", action="store_true",
                   help="train the no-KD baseline once (seed 0) and reuse it for every seed (student searches)")
    p.add_argument("--no-cache", action="store_true",
                   help=f"rebuild split, teacher and soft targets even when {CACHE} holds them (never cached: --dry)")
    p.add_argument("--name", help="results file name (default: quality, or hinton with --profile hinton)")
    a = p.parse_args(argv)
    size = size_of(a)
    seeds = a.seeds or SIZES[size]["seeds"]
    scratch = setup(a.threads)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in a.set)}
    hinton = a.profile == "hinton"

    plan: dict[str, dict] = {}  # name -> raw params
    if hinton:
        sources = {src: src for src in a.data} or {"digits 28×28": digits28(scratch / "digits28.npz")}
        plan |= {name: {"profile": "hinton", "source": src} for name, src in sources.items()}
    else:
        names = a.sets.split(",") if a.sets else ([] if a.data or a.profile else list(SETS))
        plan |= {n: {"profile": SETS[n]} for n in names}
        plan |= {src: {"profile": a.profile or "digits", "source": src} for src in a.data}
        if a.profile and not a.data:
            plan[a.profile] = {"profile": a.profile}

    sets, kinds, md = {}, {}, []
    for name, spec in plan.items():
        raw = load_profile(spec["profile"])
        if "source" in spec:
            raw = with_overrides(raw, {"data.source": spec["source"]})
        raw = sized(with_overrides(raw, overrides), size, a.epochs)
        kinds[name] = kind_of(raw["data"]["source"])
        print(f"[quality] {name}: profile {spec['profile']}, {seeds} seed(s) ...", flush=True)
        cache = None if a.no_cache or size == "dry" else CACHE
        sets[name] = run_set(raw, seeds, fresh_dir(scratch, f"set-{len(sets)}"), a.jobs, a.threads, a.one_baseline,
                             cache)
        sets[name]["profile"] = spec["profile"]
    if hinton:
        for name, s in sets.items():
            table_md, closed = hinton_table(s)
            s["gap_closed"] = closed
            md.append(f"### Hinton et al. 2015 §3 setup — {name}\n\n{table_md}")
        result = "hinton"
    else:
        md.append("### Quality — test split, mean ± std over seeds (selection on validation only)\n\n"
                  + quality_table(sets) + "\n\nOne teacher per data set (seed 0); baseline and student over "
                  "the seeds. Retention = student / teacher accuracy; KD gain = student − baseline; speed-up = "
                  "teacher / student batch-1 latency; throughput = student / teacher samples/s at batch 256. "
                  "Val acc = the student's best-on-validation accuracy, what profiles are tuned on."
                  + "".join(set_notes(n, s) for n, s in sets.items()))
        checks = targets(sets, kinds)
        if checks:
            md.append(table(["data", "target", "result"], checks))
        result = "quality"
    text = "\n\n".join(md)
    print(text, flush=True)
    write_result(a.name or result, {"size": size, "seeds": seeds, "sets": sets, "markdown": text}, a.results)
    cleanup(scratch, a.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
