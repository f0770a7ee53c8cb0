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
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

SETS = {  # name: profile (benchmarks/profiles/<profile>.yaml; default = params.yaml)
    "mnist1d": "mnist1d",  # params.yaml with the distillation tuned on val
    "lowlabel": "lowlabel",
    "digits": "digits",
}
SIZES = {  # overrides by run size; `epochs` scales every training section
    "full": {"seeds": 3, "epochs": 1.0, "over": {}},
    "quick": {"seeds": 1, "epochs": 0.2, "over": {"data.transfer_size": 10_000, "evaluate.latency_repeats": 50}},
    "dry": {"seeds": 1, "epochs": 0.0, "over": {"data.num_samples": 600, "data.val_size": 100, "data.test_size": 100,
                                                "data.train_limit": 200, "data.transfer_size": 200,
                                                "evaluate.latency_repeats": 10, "evaluate.ood_samples": 50}},
}
SHARED = ("data", "teacher", "soft_targets")  # built once per data set, by seed 0
GENERATED_ONLY = ("data.num_samples", "data.transfer_size")  # sizes of generated (mnist1d) data only
KEYS = ("teacher.accuracy", "baseline.accuracy", "student.accuracy", "teacher.params", "student.params",
        "retention", "kd_gain", "compression", "speedup", "throughput_ratio")


def sized(raw: dict, size: str, epochs: int | None) -> dict:
    s = SIZES[size]
    generated = raw.get("data", {}).get("source", "mnist1d") == "mnist1d"
    over = {k: v for k, v in s["over"].items() if generated or k not in GENERATED_ONLY}
    raw = C.with_overrides(raw, over)
    if s["epochs"] != 1.0:
        raw = C.scale_epochs(raw, s["epochs"])
    if epochs is not None:
        raw = C.with_overrides(raw, {f"{sec}.epochs": epochs for sec in C.ROLES_TRAIN})
    return C.quiet_training(raw)


def run_set(raw: dict, seeds: int, work: Path, jobs: int = 1, threads: int = C.THREADS) -> dict:
    """Seed 0 builds the split, the teacher and its soft targets; every seed trains a baseline and a student.

    One teacher per data set and students over seeds, as KD papers report (e.g. Tian et al. 2020): the
    question is what a student gains from a given teacher, and a teacher per seed would triple the cost.
    Seeds 1.. run `jobs` at a time in worker processes with threads/jobs torch threads each: small models
    use a second core better as a second process than as a second thread.
    """
    t0 = time.perf_counter()
    res = C.pipeline(C.with_overrides(raw, {"seed": 0}), C.fresh_dir(work, "seed0"))
    keep = C.fresh_dir(work, "shared")
    shared = {k: Path(C.shutil.move(res["paths"][k], keep / k)) for k in SHARED if res["paths"][k].exists()}
    runs = [_row(res, shared)]
    C.cleanup(work / "seed0")
    rest = range(1, seeds)
    if jobs > 1 and len(rest) > 1:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        with ProcessPoolExecutor(min(jobs, len(rest)), mp_context=ctx) as pool:
            runs += list(pool.map(_seed_run, [raw] * len(rest), rest, [work] * len(rest), [shared] * len(rest),
                                  [max(1, threads // jobs)] * len(rest)))
    else:
        runs += [_seed_run(raw, seed, work, shared, None) for seed in rest]
    return {"runs": runs, "seconds": time.perf_counter() - t0, "jobs": jobs}


def _seed_run(raw: dict, seed: int, work: Path, shared: dict[str, Path], threads: int | None) -> dict:
    """Baseline and student of one seed on the shared data/teacher/soft targets (in a worker: `threads`)."""
    scratch = C.setup(threads) if threads else None
    res = C.pipeline(C.with_overrides(raw, {"seed": seed}), C.fresh_dir(work, f"seed{seed}"), shared)
    C.cleanup(work / f"seed{seed}")
    if scratch is not None:  # a pool worker ends without atexit: drop its scratch and MLflow store here
        C.cleanup(scratch)
        Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).unlink(missing_ok=True)
    return _row(res, shared)


def _row(res: dict, shared: dict[str, Path]) -> dict:
    m = res["metrics"]
    return {**{k: m[k] for k in KEYS}, "test_samples": _test_count(shared["data"]),
            "seconds": {k: round(v["wall_seconds"], 1) for k, v in res.items() if "wall_seconds" in v},
            "cpu_seconds": {k: round(v["cpu_seconds"], 1) for k, v in res.items() if "cpu_seconds" in v}}


def _test_count(data: Path) -> int:
    from kdflow.data.module import load_info

    return load_info(data)["counts"]["test"]


def col(runs: list[dict], key: str) -> list[float]:
    return [r[key] for r in runs]


def quality_table(sets: dict[str, dict]) -> str:
    rows = []
    for name, s in sets.items():
        r = s["runs"]
        rows.append((name, C.pm(col(r, "teacher.accuracy")[:1], 100), C.pm(col(r, "baseline.accuracy"), 100),
                     C.pm(col(r, "student.accuracy"), 100), f"{r[0]['teacher.params']:,}",
                     f"{r[0]['student.params']:,}",
                     C.pm(col(r, "retention"), 100, 1), C.pm(col(r, "kd_gain"), 100), f"{r[0]['compression']:.0f}×",
                     C.pm(col(r, "speedup"), 1, 1) + "×", C.pm(col(r, "throughput_ratio"), 1, 1) + "×",
                     f"{len(r)}", f"{s['seconds'] / 60:.1f}"))
    return C.table(["data", "teacher acc %", "baseline acc %", "KD student acc %", "teacher params",
                    "student params", "retention %", "KD gain (pts)", "compression", "latency speed-up (b=1)",
                    "throughput × (b=256)", "seeds", "min"], rows)


def targets(sets: dict[str, dict], kinds: dict[str, str]) -> list[tuple[str, str, str]]:
    """The issue's targets, checked on the means over seeds."""
    out = []
    for name, s in sets.items():
        m = {k: C.mean_std(col(s["runs"], k))[0] for k in KEYS}
        if kinds[name] == "image":
            ok = m["retention"] >= 0.99 and m["compression"] >= 20 and m["throughput_ratio"] >= 5
            out.append((name, "image: retention ≥ 99 %, params ≤ 1/20, throughput ≥ 5×",
                        f"{m['retention']:.1%}, 1/{m['compression']:.0f}, {m['throughput_ratio']:.1f}× → "
                        f"{C.verdict(ok)}"))
        if name == "mnist1d":
            ok = m["student.params"] <= 5210 and m["student.accuracy"] >= 0.985 and m["kd_gain"] >= 0.01
            out.append((name, "student ≤ 5,210 params, ≥ 98.5 %, ≥ +1 pt over augmentation alone",
                        f"{m['student.params']:,.0f}, {m['student.accuracy']:.2%}, {100 * m['kd_gain']:+.2f} pts → "
                        f"{C.verdict(ok)}"))
    return out


def hinton_table(s: dict) -> tuple[str, float]:
    r = s["runs"]
    n = r[0]["test_samples"]
    roles = ("teacher", "baseline", "student")
    errs = {role: [round(n * (1 - x)) for x in col(r, f"{role}.accuracy")] for role in roles}
    errs["teacher"] = errs["teacher"][:1]  # one teacher, shared by the seeds
    mean = {k: C.mean_std(v)[0] for k, v in errs.items()}
    gap = mean["baseline"] - mean["teacher"]
    closed = (mean["baseline"] - mean["student"]) / gap if gap > 0 else float("nan")
    rows = [("teacher", "MLP 1200-1200, dropout, ±2 px jitter", f"{r[0]['teacher.params']:,}"),
            ("baseline", "MLP 800-800, no regularization", f"{r[0]['student.params']:,}"),
            ("distilled", "MLP 800-800, soft targets at T = 20", f"{r[0]['student.params']:,}")]
    body = [(*row, C.pm(errs[role], 1, 1), C.pm([e / n for e in errs[role]], 100))
            for row, role in zip(rows, roles)]
    md = C.table(["model", "architecture", "params", f"test errors (of {n:,})", "error %"], body)
    return md + (f"\n\nError gap closed by distillation: **{closed:.0%}** (Hinton 2015: 91 %; target ≥ 80 %: "
                 f"{C.verdict(closed >= 0.8)}); one teacher, baseline and student over {len(r)} seeds; "
                 f"{s['seconds'] / 60:.1f} min"), closed


def kind_of(raw_source: str) -> str:
    return "signal" if raw_source.startswith("mnist1d") else "image"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(p)
    p.add_argument("--sets", help=f"built-in data sets, comma-separated ({', '.join(SETS)}); default: all, "
                                  "unless --data or --profile is given")
    p.add_argument("--data", action="append", default=[], metavar="SOURCE",
                   help="your data as a data.source (imagefolder:DIR, idx:IMAGES,LABELS, npz:FILE, ...); repeatable")
    p.add_argument("--profile", help="params profile for --data (default: digits), or `hinton`")
    p.add_argument("--seeds", type=int, help="training seeds (default: 3; quick: 1)")
    p.add_argument("--epochs", type=int, help="epochs of every training stage (default: the profile's)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    p.add_argument("--threads", type=int, default=C.THREADS)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="seeds 1.. trained in parallel processes (threads split between them)")
    a = p.parse_args(argv)
    size = C.size_of(a)
    seeds = a.seeds or SIZES[size]["seeds"]
    scratch = C.setup(a.threads)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in a.set)}
    hinton = a.profile == "hinton"

    plan: dict[str, dict] = {}  # name -> raw params
    if hinton:
        sources = {src: src for src in a.data} or {"digits 28×28": C.digits28(scratch / "digits28.npz")}
        plan |= {name: {"profile": "hinton", "source": src} for name, src in sources.items()}
    else:
        names = a.sets.split(",") if a.sets else ([] if a.data or a.profile else list(SETS))
        plan |= {n: {"profile": SETS[n]} for n in names}
        plan |= {src: {"profile": a.profile or "digits", "source": src} for src in a.data}
        if a.profile and not a.data:
            plan[a.profile] = {"profile": a.profile}

    sets, kinds, md = {}, {}, []
    for name, spec in plan.items():
        raw = C.load_profile(spec["profile"])
        if "source" in spec:
            raw = C.with_overrides(raw, {"data.source": spec["source"]})
        raw = sized(C.with_overrides(raw, overrides), size, a.epochs)
        kinds[name] = kind_of(raw["data"]["source"])
        print(f"[quality] {name}: profile {spec['profile']}, {seeds} seed(s) ...", flush=True)
        sets[name] = run_set(raw, seeds, C.fresh_dir(scratch, f"set-{len(sets)}"), a.jobs, a.threads)
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
                  "teacher / student batch-1 latency; throughput = student / teacher samples/s at batch 256.")
        checks = targets(sets, kinds)
        if checks:
            md.append(C.table(["data", "target", "result"], checks))
        result = "quality"
    text = "\n\n".join(md)
    print(text, flush=True)
    C.write_result(result, {"size": size, "seeds": seeds, "sets": sets, "markdown": text}, a.results)
    C.cleanup(scratch, a.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
