"""Training cost: one student epoch with hard labels, KD from cached soft targets, KD with the online
teacher, and the same hard-label epoch in a hand-written PyTorch loop.

Hinton's MLPs (teacher 1200-1200, student 800-800) on 60k 28×28 images, batch 128, 2 threads. Lightning
epoch times are the gaps between consecutive epoch ends in the stage's MLflow run (wall, and CPU from a
sampling clock); the first epoch (warm-up) never counts. The modes run in interleaved rounds and each
reports its fastest epoch: other work on the machine only ever slows an epoch down. Targets: KD-cached /
hard ≤ 1.05 and Lightning / plain ≤ 1.05, judged on wall time, or on CPU time when other work loaded the
machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

SIZES = {"full": (60_000, 3, 2), "quick": (20_000, 3, 1), "dry": (1_000, 2, 1)}  # (samples, epochs per run, rounds)
MODES = {  # key: (what, stage, overrides)
    "a": ("hard labels only", "train_baseline", {}),
    "b": ("KD, cached soft targets", "distill", {}),
    "c": ("KD, online teacher", "distill", {"soft_targets.mode": "online"}),
}


def lightning_epochs(raw: dict, key: str, data: Path, teacher: Path, store: Path, work: Path,
                     clock: C.CpuClock) -> dict[str, list[float]]:
    _, name, overrides = MODES[key]
    ins = {"data": data, "teacher": teacher, "soft_targets": store}
    C.stage(name, C.with_overrides(raw, overrides), ins, {"model": work / f"model-{key}"})
    return C.latest_run_epochs(raw, clock)


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
    from kdflow.data.module import load_info, load_split
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
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        model.eval()
        with torch.inference_mode():
            correct = sum(int((model(xv[i:i + 1024]).argmax(1) == yv[i:i + 1024]).sum())
                          for i in range(0, len(yv), 1024))
        assert 0 <= correct <= len(yv)
        ends.append((time.perf_counter(), time.process_time()))
    # from the end of epoch 1 on, as the Lightning gaps: the warm-up epoch never counts
    return {kind: [b[i] - a[i] for a, b in zip(ends[1:], ends[2:])] for i, kind in enumerate(("wall", "cpu"))}


def run(size: str, results: Path, keep: bool = False) -> dict:
    samples, epochs, rounds = SIZES[size]
    scratch = C.setup()
    loaded = C.loaded()
    raw, data, teacher = C.speed_fixture(scratch, samples)
    per_run = {f"{sec}.epochs": epochs for sec in C.ROLES_TRAIN} | {"distill.use_transfer": False}
    raw = C.with_overrides(raw, per_run)
    store = scratch / "soft_targets"
    C.stage("soft_targets", raw, {"data": data, "teacher": teacher}, {"soft_targets": store})
    kinds = ("wall", "cpu")
    epochs_s: dict[str, dict[str, list[float]]] = {k: {kind: [] for kind in kinds} for k in (*MODES, "plain")}
    clock = C.CpuClock()
    for _ in range(rounds):
        for key in epochs_s:
            got = (plain_epochs(raw, data, epochs) if key == "plain"
                   else lightning_epochs(raw, key, data, teacher, store, scratch, clock))
            for kind in kinds:
                epochs_s[key][kind] += got[kind]
    clock.stop()
    best = {k: {kind: min(v[kind]) for kind in kinds} for k, v in epochs_s.items()}
    pairs = {"b/a (KD cached / hard)": ("b", "a", 1.05), "c/a (KD online / hard)": ("c", "a", None),
             "Lightning / plain": ("a", "plain", 1.05)}
    ratios = {name: {kind: best[x][kind] / best[y][kind] for kind in kinds} for name, (x, y, _) in pairs.items()}
    judge = "cpu" if loaded else "wall"
    targets = {name: ratios[name][judge] <= limit for name, (_, _, limit) in pairs.items() if limit}
    what = {**{k: MODES[k][0] for k in MODES}, "plain": "hand-written PyTorch loop, hard labels"}
    rows = [(f"({k if k != 'plain' else 'd'}) {what[k]}", f"{best[k]['wall']:.2f}", f"{best[k]['cpu']:.2f}",
             f"{samples / best[k]['wall']:,.0f}") for k in epochs_s]
    ratio_rows = [(name, f"{ratios[name]['wall']:.3f}", f"{ratios[name]['cpu']:.3f}",
                   f"≤ {limit} on {judge}: {C.verdict(targets[name])}" if limit else "—")
                  for name, (_, _, limit) in pairs.items()]
    return C.finish("training_speed", [
        f"### Training cost — student MLP 800-800, {samples:,} samples 28×28, batch 128, {C.THREADS} threads",
        C.table(["student epoch (fastest of " f"{rounds * (epochs - 1)})", "wall s", "CPU s", "samples/s"], rows),
        C.table(["ratio", "wall", "CPU", "target"], ratio_rows),
    ], {"size": size, "samples": samples, "epochs_per_run": epochs, "rounds": rounds, "epoch_seconds": epochs_s,
        "best_epoch_seconds": best, "ratios": ratios, "judged_on": judge, "targets": targets},
        loaded, results, scratch, keep)


def main(argv: list[str] | None = None) -> int:
    return C.run_main(run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
