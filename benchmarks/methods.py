"""Distillation methods side by side: student test accuracy, KD gain and distill time, mean ± std over seeds.

    python benchmarks/methods.py                                  # mnist1d (params.yaml) and digits, 3 seeds
    python benchmarks/methods.py --sets digits --methods kd,dkd --seeds 1
    # 2 cores: two processes (1 thread each) share one --work dir, each taking some methods; then merge
    python benchmarks/methods.py --work W --threads 1 --methods kd,dkd,hint,att,born --results R1 &
    python benchmarks/methods.py --work W --threads 1 --methods ens,onl,off,no,lab --results R2
    python benchmarks/methods.py --merge R1/methods.json R2/methods.json

Per data set, seed 0 builds the data, the teacher and its soft targets (and, for the ensemble, two
teachers of seeds 1 and 2); every seed trains the no-KD baseline (the student with augmentation alone)
and one student per method, all from the same teacher signal. Every model is selected on validation;
the test split is read once per model. KD gain = method − the baseline of the same seed. Born-again:
generation 0 is that baseline (same architecture), and its gain is over generation 0, its own teacher.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.cli import add_common_args, size_of  # noqa: E402
from harness.env import THREADS, cleanup, fresh_dir, setup  # noqa: E402
from harness.profiles import load_profile, quiet_training, scale_epochs, with_overrides  # noqa: E402
from harness.results import write_result  # noqa: E402
from harness.stages import stage  # noqa: E402
from harness.stats import pm  # noqa: E402
from harness.tables import table  # noqa: E402

SETS = {"mnist1d": "default", "digits": "digits"}  # name: profile (default = params.yaml)
# (student module, teacher module) of equal length/spatial size for the feature terms
FEATURES = {"mnist1d": ("features.3", "features.8"), "digits": ("features.6", "features.6")}
ENSEMBLE_SEEDS = (1, 2)  # extra teachers next to the main (seed 0) one
GENERATIONS = 2
SIZES = {"full": {"seeds": 3, "epochs": 1.0, "over": {}},
         "quick": {"seeds": 1, "epochs": 0.2, "over": {"data.transfer_size": 5_000}},
         "dry": {"seeds": 1, "epochs": 0.0, "over": {"data.num_samples": 600, "data.val_size": 100,
                                                     "data.test_size": 100, "data.transfer_size": 200}}}


def variants(raw: dict, name: str, counts: dict[str, int]) -> dict[str, dict]:
    """Method name → params overrides on top of the profile (`kd` is the profile as it is)."""
    s, t = FEATURES[name]
    online = raw.get("soft_targets", {}).get("mode") == "online"
    out = {
        "kd": {},
        "dkd": {"distill.loss": "dkd", "distill.alpha": 0.5},  # the paper's CE + 1·TCKD + 8·NCKD, halved
        "hint (FitNets)": {"distill.features": [{"method": "hint", "student": s, "teacher": t, "weight": 1.0}]},
        "attention transfer": {"distill.features": [{"method": "attention", "student": s, "teacher": t,
                                                     "weight": 1000.0}]},
        # the combined store instead of the main teacher's; a store is cached logits, so offline
        ("ensemble of 3 teachers (offline, no augmentation)" if online else "ensemble of 3 teachers"):
            {"soft_targets.mode": "offline", "distill.train.augment": {"enabled": False}} if online else {},
        # the other teacher-signal path: cached logits without augmentation, or the online teacher with it
        ("offline, no augmentation" if online else "online teacher + augmentation"):
            {"soft_targets.mode": "offline", "distill.train.augment": {"enabled": False}} if online else
            {"soft_targets.mode": "online", "distill.train.augment": raw["student"]["train"].get("augment", {})},
    }
    if raw["distill"].get("use_transfer") and raw["data"].get("transfer_size"):
        out["no transfer set"] = {"distill.use_transfer": False}  # same epochs: far fewer steps
        steps_as_kd = round(raw["distill"]["train"]["epochs"] * (1 + counts["transfer"] / counts["train"]))
        out["no transfer set (as many steps as kd)"] = {"distill.use_transfer": False,
                                                        "distill.train.epochs": steps_as_kd}
        out["labeled 25 % of each batch"] = {"distill.labeled_fraction": 0.25}
    out[f"born-again ({GENERATIONS} generations)"] = {"born_again.generations": GENERATIONS}
    return out


def test_accuracy(model_dir: Path, data: Path) -> float:
    import torch

    from kdflow.data.reader import load_split
    from kdflow.models import load_model

    model, _ = load_model(model_dir)
    test = load_split(data, "test")
    with torch.inference_mode():
        pred = model(torch.from_numpy(test["x"])).argmax(1).numpy()
    return float((pred == test["y"]).mean())


def shared_artifacts(raw: dict, work: Path, ensemble: bool) -> dict[str, Path]:
    """Seed 0's data, teacher and soft targets, plus (`ensemble`) the 3-teacher combined store.

    Built once per work dir: outputs are atomic, so one that exists is complete; a lock per output makes
    a second process sharing the dir wait for the first instead of training the same teacher again.
    """
    p = {k: work / k for k in ("data", "teacher", "soft_targets", "ensemble")}
    # the soft-target stage (cached logits) runs whatever the profile's mode; the distill settings do not matter
    cfg = with_overrides(raw, {"seed": 0, "soft_targets.mode": "offline",
                                 "distill.train.augment": {"enabled": False}})

    def build(name: str, cfg: dict, inputs: dict[str, Path], outputs: dict[str, Path]) -> None:
        out = next(iter(outputs.values()))
        with open(work / f".{out.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not out.exists():
                stage(name, cfg, inputs, outputs)

    build("prepare", cfg, {}, {"data": p["data"]})
    stores = {}
    for seed in (0, *ENSEMBLE_SEEDS) if ensemble else (0,):
        t, st = (p["teacher"], p["soft_targets"]) if seed == 0 else (work / f"teacher{seed}", work / f"st{seed}")
        member = with_overrides(cfg, {"seed": seed})
        build("train_teacher", member, {"data": p["data"]}, {"model": t, "checkpoints": work / f"ck{seed}"})
        build("soft_targets", member, {"data": p["data"], "teacher": t}, {"soft_targets": st})
        stores["main" if seed == 0 else f"seed{seed}"] = st
    if ensemble:
        from kdflow.stages.combine_teachers import run as stack  # stores by name, not from the params

        build(stack, cfg, {"data": p["data"], **stores}, {"soft_targets": p["ensemble"]})
    return p


def run_seed(raw: dict, name: str, seed: int, shared: dict[str, Path], work: Path, only: list[str] | None) -> dict:
    """The baseline and every method's student for one seed: {method: {accuracy, kd_gain, wall, cpu}}."""
    data = shared["data"]
    base = with_overrides(raw, {"seed": seed})
    stage("train_baseline", base, {"data": data}, {"model": work / "baseline", "checkpoints": work / "ckb"})
    acc0 = test_accuracy(work / "baseline", data)
    rows = {"no-KD baseline (augmentation)": {"accuracy": acc0, "kd_gain": 0.0}}
    from kdflow.data.reader import load_info

    for method, over in variants(raw, name, load_info(data)["counts"]).items():
        if only and not any(method.startswith(o) for o in only):
            continue
        cfg = with_overrides(base, over)
        out = work / f"m{len(rows)}"
        if method.startswith("born-again"):
            s = stage("born_again", cfg, {"data": data, "teacher": work / "baseline"},
                        {"generations": out, "checkpoints": work / "ckg"})
            accs = [test_accuracy(out / f"gen-{k}", data) for k in range(1, GENERATIONS + 1)]
            for k, acc in enumerate(accs, 1):
                rows[f"born-again gen {k} (from gen {k - 1})"] = {
                    "accuracy": acc, "kd_gain": acc - acc0, "wall": s["wall_seconds"] / GENERATIONS,
                    "cpu": s["cpu_seconds"] / GENERATIONS}
            continue
        store = shared["ensemble"] if method.startswith("ensemble") else shared["soft_targets"]
        s = stage("distill", cfg, {"data": data, "soft_targets": store, "teacher": shared["teacher"]},
                    {"model": out, "checkpoints": work / "ckd"})
        acc = test_accuracy(out, data)
        rows[method] = {"accuracy": acc, "kd_gain": acc - acc0, "wall": s["wall_seconds"], "cpu": s["cpu_seconds"]}
        print(f"[methods] {name} seed {seed} {method}: test {acc:.2%} ({acc - acc0:+.2%}), "
              f"{s['wall_seconds']:.0f} s", flush=True)
    return rows


def methods_table(per_seed: list[dict], teacher_acc: float) -> str:
    rows = []
    for method in per_seed[0]:
        got = [r[method] for r in per_seed if method in r]
        t = [g["wall"] for g in got if "wall" in g]
        rows.append((method, pm([g["accuracy"] for g in got], 100), pm([g["kd_gain"] for g in got], 100),
                     pm(t, 1, 0) if t else "—", pm([g["cpu"] for g in got], 1, 0) if t else "—"))
    return (table(["method", "student test acc %", "gain over no-KD baseline (pts)", "distill wall s",
                     "distill CPU s"], rows) + f"\n\nTeacher (seed 0): {100 * teacher_acc:.2f} %.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated ({', '.join(SETS)})")
    p.add_argument("--methods", help="comma-separated method-name prefixes (default: all)")
    p.add_argument("--seeds", type=int)
    p.add_argument("--threads", type=int, default=THREADS)
    p.add_argument("--work", type=Path, help="keep the shared teachers here and reuse them (and share with "
                                             "a parallel run); default: a temp dir")
    p.add_argument("--merge", nargs="+", type=Path, metavar="JSON", help="only merge the results of earlier runs")
    a = p.parse_args(argv)
    if a.merge:
        return merge(a.merge, a.results)
    size = size_of(a)
    seeds = a.seeds or SIZES[size]["seeds"]
    only = a.methods.split(",") if a.methods else None
    scratch = setup(a.threads)
    doc, md = {"size": size, "seeds": seeds, "sets": {}}, []
    for name in a.sets.split(","):
        raw = load_profile(SETS[name])
        generated = raw.get("data", {}).get("source", "mnist1d") == "mnist1d"
        over = {k: v for k, v in SIZES[size]["over"].items() if generated or not k.startswith("data.")}
        raw = quiet_training(with_overrides(raw, over))
        if SIZES[size]["epochs"] != 1.0:
            raw = scale_epochs(raw, SIZES[size]["epochs"])
        t0 = time.perf_counter()
        work = a.work / name if a.work else fresh_dir(scratch, name)
        work.mkdir(parents=True, exist_ok=True)
        print(f"[methods] {name}: profile {SETS[name]}, {seeds} seed(s) ...", flush=True)
        shared = shared_artifacts(raw, work, ensemble=not only or any("ensemble".startswith(o) for o in only))
        teacher_acc = test_accuracy(shared["teacher"], shared["data"])
        per_seed = []
        for seed in range(seeds):
            mine = fresh_dir(work, f"seed{seed}-{os.getpid()}")  # private to this process
            per_seed.append(run_seed(raw, name, seed, shared, mine, only))
            cleanup(mine, a.keep)
        minutes = (time.perf_counter() - t0) / 60
        doc["sets"][name] = {"teacher_accuracy": teacher_acc, "per_seed": per_seed, "minutes": minutes}
        md.append(heading(name, seeds, minutes) + methods_table(per_seed, teacher_acc))
    return finish(doc, md, a.results, scratch, a.keep)


def finish(doc: dict, md: list[str], results: Path, scratch: Path | None, keep: bool) -> int:
    text = "\n\n".join(md + ["One teacher (seed 0) and one soft-target store per data set; the ensemble adds "
                             "teachers of seeds 1 and 2 (probabilities averaged at T). Born-again gains are "
                             "over generation 0 = the no-KD baseline, i.e. over its own teacher."])
    print(text, flush=True)
    doc["markdown"] = text
    write_result("methods", doc, results)
    if scratch is not None:
        cleanup(scratch, keep)
    return 0


def merge(paths: list[Path], results: Path) -> int:
    """One table from runs that each took some of the methods (same sets, seeds and shared work dir)."""
    docs = [json.loads(Path(p).read_text()) for p in paths]
    out = {"size": docs[0]["size"], "seeds": docs[0]["seeds"], "sets": {}, "merged_from": [str(p) for p in paths]}
    md = []
    for name in dict.fromkeys(n for d in docs for n in d["sets"]):  # every set, in first-seen order
        parts = [d["sets"][name] for d in docs if name in d["sets"]]
        per_seed = [{k: v for part in parts for k, v in part["per_seed"][i].items()}
                    for i in range(min(len(part["per_seed"]) for part in parts))]
        out["sets"][name] = {"teacher_accuracy": parts[0]["teacher_accuracy"], "per_seed": per_seed,
                             "minutes": max(part["minutes"] for part in parts)}
        md.append(heading(name, len(per_seed), out["sets"][name]["minutes"]) +
                  methods_table(per_seed, parts[0]["teacher_accuracy"]))
    return finish(out, md, results, None, False)


def heading(name: str, seeds: int, minutes: float) -> str:
    return (f"### Distillation methods — {name} (profile `{SETS[name]}`), test split, mean ± std over "
            f"{seeds} seed(s), {minutes:.0f} min\n\n")


if __name__ == "__main__":
    sys.exit(main())
