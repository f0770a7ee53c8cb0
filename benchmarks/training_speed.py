"""Training cost: one student epoch with hard labels, KD from cached soft targets, KD with the online
teacher, and the same hard-label epoch in a hand-written PyTorch loop.

Hinton's MLPs (teacher 1200-1200, student 800-800) on 60k 28×28 images, batch 128, 2 threads. Lightning
epoch times are the gaps between consecutive epoch ends in the stage's MLflow run (wall, and CPU from a
sampling clock); the first epoch (warm-up) never counts. The modes run in interleaved rounds and each
reports its fastest epoch: other work on the machine only ever slows an epoch down. Targets: KD-cached /
hard ≤ 1.05 and Lightning / plain ≤ 1.05, judged on wall time, or on CPU time when other work loaded the
machine.

A second table times the stages as users run them: `kdflow train-baseline`, `kdflow distill` and `kdflow
train-teacher` as processes (progress lines on, MLflow, checkpoints), each beside a plain PyTorch script doing
the same training as a process, in interleaved rounds: steady-state epoch and whole process, start-up
included. Target: every stage ≥ 0.9× the plain script's speed.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.cli import run_main  # noqa: E402
from harness.clocks import CpuClock, latest_run_epochs  # noqa: E402
from harness.env import ROOT, THREADS, child_env, cleanup, setup  # noqa: E402
from harness.fixtures import speed_fixture  # noqa: E402
from harness.machine import loaded  # noqa: E402
from harness.profiles import ROLES_TRAIN, with_overrides  # noqa: E402
from harness.results import finish  # noqa: E402
from harness.stages import stage  # noqa: E402
from harness.tables import table, verdict  # noqa: E402

SIZES = {"full": (60_000, 3, 2), "quick": (10_000, 3, 1), "dry": (1_000, 2, 1)}  # (samples, epochs per run, rounds)
# `kdflow <stage>` processes timed beside a plain script; quick times distill alone (each pair of processes costs
# 25-45 s, start-up included: the other two would be a third of `make bench-quick`'s 5 min)
CLI_QUICK = ("distill",)
MODES = {  # key: (what, stage, overrides)
    "a": ("hard labels only", "train_baseline", {}),
    "b": ("KD, cached soft targets", "distill", {}),
    "c": ("KD, online teacher", "distill", {"soft_targets.mode": "online"}),
}


def _step(loss, opt, sched) -> None:
    opt.zero_grad()
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()


def _validate(model, xv, yv) -> None:
    """A validation pass, as the stages run one per epoch."""
    import torch
    model.eval()
    with torch.inference_mode():
        correct = sum(int((model(xv[i:i + 1024]).argmax(1) == yv[i:i + 1024]).sum())
                      for i in range(0, len(yv), 1024))
    assert 0 <= correct <= len(yv)


def lightning_epochs(raw: dict, key: str, data: Path, teacher: Path, store: Path, work: Path,
                     clock: CpuClock) -> dict[str, list[float]]:
    _, name, overrides = MODES[key]
    ins = {"data": data, "teacher": teacher, "soft_targets": store}
    stage(name, with_overrides(raw, overrides), ins, {"model": work / f"model-{key}"})
    return latest_run_epochs(raw, clock)


def kdflow_optimizer(model, t, total_steps: int):
    """The optimizer and per-step schedule exactly as kdflow's module configures them, so the comparison
    measures the framework, not a different optimizer (e.g. fused vs for-loop AdamW)."""
    from types import SimpleNamespace

    from kdflow.lit.modules import ClassifierModule

    module = ClassifierModule(model, t)
    module._trainer = SimpleNamespace(estimated_stepping_batches=total_steps)  # all configure_optimizers reads
    conf = module.configure_optimizers()
    if isinstance(conf, dict):
        return conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    return conf, None


def plain_epochs(raw: dict, data: Path, epochs: int) -> dict[str, list[float]]:
    """The hand-written loop a user would write: same model, optimizer, schedule, batches and val pass."""
    import torch
    import torch.nn.functional as F

    from kdflow.config import validate
    from kdflow.data.reader import load_info, load_split
    from kdflow.models import build_model
    from kdflow.stages.common import seed_all, spec_for

    cfg = validate(raw)
    t = cfg.student.train
    seed_all(cfg.seed)
    model = build_model(spec_for(cfg.student.model, load_info(data)))
    tr, va = load_split(data, "train"), load_split(data, "val")
    x, y = torch.from_numpy(tr["x"]), torch.from_numpy(tr["y"])
    xv, yv = torch.from_numpy(va["x"]), torch.from_numpy(va["y"])
    steps = len(y) // t.batch_size
    opt, sched = kdflow_optimizer(model, t, epochs * steps)
    g = torch.Generator().manual_seed(cfg.seed)
    ends = [(time.perf_counter(), time.process_time())]
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=g)
        for i in range(steps):
            idx = order[i * t.batch_size:(i + 1) * t.batch_size]
            _step(F.cross_entropy(model(x[idx]), y[idx]), opt, sched)
        _validate(model, xv, yv)
        ends.append((time.perf_counter(), time.process_time()))
    # from the end of epoch 1 on, as the Lightning gaps: the warm-up epoch never counts
    return {kind: [b[i] - a[i] for a, b in zip(ends[1:], ends[2:])] for i, kind in enumerate(("wall", "cpu"))}


# ---------------------------------------------------------------- the stages as users run them (CLI processes)

CLI = {  # stage: (CLI command, role whose model trains, extra inputs)
    "train_baseline": ("train-baseline", "student", []),
    "distill": ("distill", "student", ["--soft-targets", "{store}"]),
    "train_teacher": ("train-teacher", "teacher", []),
}


def plain_child(params: Path, data: Path, stage: str, epochs: int, store: Path | None, out: Path) -> dict:
    """What a user's own script does for `stage`: same model, optimizer, schedule, batches, augmentation and
    (distill) cached-logit KD loss, a validation pass per epoch, the weights saved at the end. Run as a process
    by `cli_round` so its start-up (imports, data load) is timed like the stage's."""
    import torch
    import yaml

    from kdflow.config import validate
    from kdflow.data.augment import augment
    from kdflow.data.reader import load_info, load_split
    from kdflow.losses.kd import kd_terms
    from kdflow.models import build_model
    from kdflow.soft_target_store import lookup_table
    from kdflow.stages.common import seed_all, spec_for

    cfg = validate(yaml.safe_load(params.read_text()))
    role = CLI[stage][1]
    t = (cfg.distill if stage == "distill" else getattr(cfg, role)).train
    seed_all(cfg.seed)
    model = build_model(spec_for(getattr(cfg, role).model, load_info(data)))
    tr, va = load_split(data, "train"), load_split(data, "val")
    x, y, ids = (torch.from_numpy(tr[k]) for k in ("x", "y", "id"))
    xv, yv = torch.from_numpy(va["x"]), torch.from_numpy(va["y"])
    table = lookup_table(store) if stage == "distill" else None
    steps = len(y) // t.batch_size
    opt, sched = kdflow_optimizer(model, t, epochs * steps)
    g, ga = torch.Generator().manual_seed(cfg.seed), torch.Generator().manual_seed(cfg.seed + 1)
    ends = [time.perf_counter()]
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=g)
        for i in range(steps):
            idx = order[i * t.batch_size:(i + 1) * t.batch_size]
            logits = model(augment(x[idx], t.augment, ga))
            if table is None:
                loss = torch.nn.functional.cross_entropy(logits, y[idx])
            else:
                d = cfg.distill
                loss = sum(kd_terms(logits, table[ids[idx]], y[idx], d.temperature, d.alpha).values())
            _step(loss, opt, sched)
        _validate(model, xv, yv)
        ends.append(time.perf_counter())
    torch.save(model.state_dict(), out)
    return {"epochs": [b - a for a, b in zip(ends[1:], ends[2:])]}


def _timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall s, CPU s of the process and its children, stdout) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout


def cli_round(raw: dict, stage: str, params: Path, data: Path, store: Path, work: Path, epochs: int) -> dict:
    """One `kdflow <stage>` process and one plain-loop process, back to back: whole-process wall/CPU seconds
    (start-up included) and steady-state epoch seconds (the stage's from its MLflow run)."""
    env = {**child_env(THREADS), "KDFLOW_PROGRESS": "lines"}  # what a pod log or `dvc repro > log` gets
    cmd, _, extra = CLI[stage]
    args = [a.format(store=store) for a in extra]
    out = {}
    wall, cpu, _ = _timed([sys.executable, "-m", "kdflow.cli", cmd, "--params", str(params), "--data", str(data),
                           *args, "--out", str(work / f"cli-{stage}")], env)
    cleanup(work / f"cli-{stage}")
    epochs_s = latest_run_epochs(raw, None)["wall"]
    out["stage"] = {"wall": wall, "cpu": cpu, "epochs": epochs_s}
    wall, cpu, stdout = _timed([sys.executable, str(Path(__file__).resolve()), "--plain-child", stage, str(params),
                                str(data), str(epochs), str(store), str(work / "plain.pt")], env)
    out["plain"] = {"wall": wall, "cpu": cpu, "epochs": json.loads(stdout.strip().splitlines()[-1])["epochs"]}
    return out


def cli_section(raw: dict, data: Path, store: Path, work: Path, epochs: int, rounds: int,
                stages: tuple[str, ...]) -> tuple[str, dict]:
    raw = with_overrides(raw, {f"{sec}.epochs": epochs for sec in ROLES_TRAIN} |
                           {f"{sec}.progress_bar": True for sec in ROLES_TRAIN})
    params = work / "params-cli.yaml"
    import yaml

    params.write_text(yaml.safe_dump(raw))
    got: dict[str, list[dict]] = {s: [] for s in stages}
    for _ in range(rounds):  # interleaved: every stage and its plain loop once per round
        for name in stages:
            got[name].append(cli_round(raw, name, params, data, store, work, epochs))
    rows, doc = [], {}
    for name, runs in got.items():
        best = {k: {"whole": min(r[k]["wall"] for r in runs), "cpu": min(r[k]["cpu"] for r in runs),
                    "epoch": min(e for r in runs for e in r[k]["epochs"])} for k in ("stage", "plain")}
        speed = {k: best["plain"][k] / best["stage"][k] for k in ("epoch", "whole", "cpu")}
        doc[name] = {"best": best, "speed_vs_plain": speed, "runs": runs}
        rows.append((f"kdflow {CLI[name][0]}", f"{best['stage']['epoch']:.2f}", f"{best['plain']['epoch']:.2f}",
                     f"{speed['epoch']:.2f}×", f"{best['stage']['whole']:.1f}", f"{best['plain']['whole']:.1f}",
                     f"{speed['whole']:.2f}×", f"{speed['cpu']:.2f}×",
                     f"≥ 0.9× (steady epoch): {verdict(speed['epoch'] >= 0.9)}"))
    md = (f"### Stages as users run them — `kdflow <stage>` processes vs a plain PyTorch script, {epochs} epochs, "
          f"best of {rounds} interleaved rounds\n\n"
          + table(["stage", "stage epoch (s)", "plain epoch (s)", "speed vs plain (epoch)", "stage whole (s)",
                     "plain whole (s)", "speed vs plain (whole, wall)", "speed vs plain (whole, CPU)", "target"], rows)
          + "\n\nSpeed = plain seconds / stage seconds (1.0× = as fast as the hand-written loop). Whole = the "
            "process from launch to exit (imports, data load, MLflow run, checkpoints, model save included).")
    return md, doc


def run(size: str, results: Path, keep: bool = False) -> dict:
    samples, epochs, rounds = SIZES[size]
    scratch = setup()
    busy = loaded()
    raw, data, teacher = speed_fixture(scratch, samples)
    per_run = {f"{sec}.epochs": epochs for sec in ROLES_TRAIN} | {"distill.use_transfer": False}
    raw = with_overrides(raw, per_run)
    store = scratch / "soft_targets"
    stage("soft_targets", raw, {"data": data, "teacher": teacher}, {"soft_targets": store})
    kinds = ("wall", "cpu")
    epochs_s: dict[str, dict[str, list[float]]] = {k: {kind: [] for kind in kinds} for k in (*MODES, "plain")}
    clock = CpuClock()
    for _ in range(rounds):
        for key in epochs_s:
            got = (plain_epochs(raw, data, epochs) if key == "plain"
                   else lightning_epochs(raw, key, data, teacher, store, scratch, clock))
            for kind in kinds:
                epochs_s[key][kind] += got[kind]
    clock.stop()
    cli_md, cli_doc = cli_section(raw, data, store, scratch, max(epochs, 3), rounds,
                                 CLI_QUICK if size == "quick" else tuple(CLI))
    best = {k: {kind: min(v[kind]) for kind in kinds} for k, v in epochs_s.items()}
    pairs = {"b/a (KD cached / hard)": ("b", "a", 1.05), "c/a (KD online / hard)": ("c", "a", None),
             "Lightning / plain": ("a", "plain", 1.05)}
    ratios = {name: {kind: best[x][kind] / best[y][kind] for kind in kinds} for name, (x, y, _) in pairs.items()}
    judge = "cpu" if busy else "wall"
    targets = {name: ratios[name][judge] <= limit for name, (_, _, limit) in pairs.items() if limit}
    what = {**{k: MODES[k][0] for k in MODES}, "plain": "hand-written PyTorch loop, hard labels"}
    rows = [(f"({k if k != 'plain' else 'd'}) {what[k]}", f"{best[k]['wall']:.2f}", f"{best[k]['cpu']:.2f}",
             f"{samples / best[k]['wall']:,.0f}") for k in epochs_s]
    ratio_rows = [(name, f"{ratios[name]['wall']:.3f}", f"{ratios[name]['cpu']:.3f}",
                   f"≤ {limit} on {judge}: {verdict(targets[name])}" if limit else "—")
                  for name, (_, _, limit) in pairs.items()]
    return finish("training_speed", [
        f"### Training cost — student MLP 800-800, {samples:,} samples 28×28, batch 128, {THREADS} threads",
        table(["student epoch (fastest of " f"{rounds * (epochs - 1)})", "wall s", "CPU s", "samples/s"], rows),
        table(["ratio", "wall", "CPU", "target"], ratio_rows),
        cli_md,
    ], {"stages_as_run": cli_doc,
        "size": size, "samples": samples, "epochs_per_run": epochs, "rounds": rounds, "epoch_seconds": epochs_s,
        "best_epoch_seconds": best, "ratios": ratios, "judged_on": judge, "targets": targets},
        busy, results, scratch, keep)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--plain-child":
        stage, params, data, epochs, store, out = sys.argv[2:8]
        cleanup(setup())
        print(json.dumps(plain_child(Path(params), Path(data), stage, int(epochs), Path(store), Path(out))))
        return 0
    return run_main(run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
