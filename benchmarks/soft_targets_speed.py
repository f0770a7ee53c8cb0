"""Soft-target throughput: the `soft_targets` stage vs a raw batched `torch.inference_mode` loop over the
same teacher and data (target ≥ 90 %), and the data split into 2 shards run as 2 `kdflow soft-targets`
processes (1 torch thread each) vs 1 process (2 threads).

The stage reads its data from the dataset directory and writes a store, so the like-for-like baseline
is the raw loop inside the plainest script that does the same (load the .npz splits, save the logits);
the in-memory loop alone is shown too, and so is the stage's own inference loop against it.

Hinton's teacher (MLP 1200-1200) on random 28×28 images; the stage's throughput is end to end (load,
infer, write the float16 store, MLflow run) and, as the stage reports it, inference alone. The target is
judged on wall time, or on CPU time when other work loaded the machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.cli import run_main  # noqa: E402
from harness.env import THREADS, child_env, setup  # noqa: E402
from harness.fixtures import speed_fixture  # noqa: E402
from harness.machine import loaded  # noqa: E402
from harness.results import finish  # noqa: E402
from harness.stages import stage  # noqa: E402
from harness.tables import table, verdict  # noqa: E402

SIZES = {"full": (60_000, 3), "quick": (20_000, 1), "dry": (1_000, 1)}  # (train samples, repeats)


def raw_paths(teacher: Path, data: Path, splits: list[str], batch: int, out: Path) -> dict[str, dict[str, float]]:
    """Samples per wall and per CPU second of the plainest inference loop (one tensor, slices) and of the
    plainest script around it (load the same .npz splits, the loop, save the logits as one .npy)."""
    import numpy as np
    import torch

    from kdflow.data.reader import load_split
    from kdflow.models import load_model

    model, _ = load_model(teacher)
    t0, c0 = time.perf_counter(), time.process_time()
    x = torch.from_numpy(np.concatenate([load_split(data, s)["x"] for s in splits if (data / f"{s}.npz").is_file()]))
    with torch.inference_mode():
        t1, c1 = time.perf_counter(), time.process_time()
        logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
        t2, c2 = time.perf_counter(), time.process_time()
    np.save(out, logits.numpy().astype(np.float16))
    t3, c3 = time.perf_counter(), time.process_time()
    n = len(x)
    return {"loop": {"wall": n / (t2 - t1), "cpu": n / (c2 - c1)},
            "script": {"wall": n / (t3 - t0), "cpu": n / (c3 - c0)}}


def kdflow_exe() -> list[str]:
    exe = Path(sys.executable).with_name("kdflow")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "kdflow.cli"]


def shards_wall(params: Path, data: Path, teacher: Path, out: Path, num_shards: int, threads: int) -> dict:
    """Launch `num_shards` `kdflow soft-targets` processes at once; wall time until the last one exits."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*kdflow_exe(), "soft-targets", "--params", str(params), "--data", str(data),
                               "--teacher", str(teacher), "--out", str(out / f"shard-{i}"), "--shard-index", str(i),
                               "--num-shards", str(num_shards)],
                              env=child_env(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(num_shards)]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(f"kdflow soft-targets failed ({p.returncode}): {err[-2000:]}")
    summaries = [json.loads(o) for o, _ in outs]
    return {"wall_seconds": wall, "samples": sum(s["samples"] for s in summaries),
            "inference_seconds": max(s["seconds"] for s in summaries)}


def run(size: str, results: Path, keep: bool = False) -> dict:
    from kdflow.config import validate

    samples, repeats = SIZES[size]
    scratch = setup()
    judge = "cpu" if loaded() else "wall"
    raw, data, teacher = speed_fixture(scratch, samples)
    cfg = validate(raw)
    speed: dict[str, list[dict[str, float]]] = {"loop": [], "script": [], "stage": [], "stage_inference": []}
    for r in range(repeats):  # interleaved: drift in the machine's load hits both sides alike
        st = cfg.soft_targets
        for k, v in raw_paths(teacher, data, st.splits, st.batch_size, scratch / "l.npy").items():
            speed[k].append(v)
        s = stage("soft_targets", cfg, {"data": data, "teacher": teacher}, {"soft_targets": scratch / f"st-{r}"})
        speed["stage"].append({"wall": s["samples"] / s["wall_seconds"], "cpu": s["samples"] / s["cpu_seconds"]})
        speed["stage_inference"].append({"wall": s["samples_per_second"]})
        shutil.rmtree(scratch / f"st-{r}")
    n = s["samples"]
    # the fastest repeat: other work on the machine only ever slows a run down
    best = {k: {kind: max(x[kind] for x in v) for kind in v[0]} for k, v in speed.items()}
    params = scratch / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    runs: dict[str, list[dict]] = {"one": [], "two": []}
    for r in range(repeats):  # alternated, fastest kept: a cold start or a load spike only slows a run
        runs["one"].append(shards_wall(params, data, teacher, scratch / f"one-{r}", 1, THREADS))
        runs["two"].append(shards_wall(params, data, teacher, scratch / f"two-{r}", 2, 1))
    one, two = (min(runs[k], key=lambda x: x["wall_seconds"]) for k in ("one", "two"))
    kinds = ("wall", "cpu")
    ratio = {"stage/script": {k: best["stage"][k] / best["script"][k] for k in kinds},
             "stage/loop": {k: best["stage"][k] / best["loop"][k] for k in kinds},
             "stage_inference/loop": best["stage_inference"]["wall"] / best["loop"]["wall"],
             "shard_speedup": one["wall_seconds"] / two["wall_seconds"],
             "shard_speedup_inference": one["inference_seconds"] / two["inference_seconds"]}
    met = ratio["stage/script"][judge] >= 0.90

    def row(name: str, key: str, vs: str) -> tuple[str, ...]:
        return (name, f"{best[key]['wall']:,.0f}", f"{best[key].get('cpu', float('nan')):,.0f}", vs)

    return finish("soft_targets_speed", [
        f"### Soft-target throughput — teacher MLP 1200-1200, {n:,} samples 28×28, batch "
        f"{cfg.soft_targets.batch_size}, {THREADS} threads",
        table(["path", f"samples/s (best of {repeats})", "samples per CPU s", "ratio"], [
            row("raw `torch.inference_mode` loop (data in memory)", "loop", "—"),
            row("raw script: load the .npz splits, loop, save .npy", "script", "1.00"),
            row("soft_targets stage, end to end", "stage",
                f"{ratio['stage/script']['wall']:.2f} wall, {ratio['stage/script']['cpu']:.2f} CPU vs script "
                f"(target ≥ 0.90 on {judge}: {verdict(met)}); {ratio['stage/loop'][judge]:.2f} vs loop"),
            (*row("soft_targets stage, its inference part", "stage_inference", "")[:2], "—",
             f"{ratio['stage_inference/loop']:.2f} wall vs loop")]),
        table(["`kdflow soft-targets` processes", "wall s (incl. start-up)", "inference s", "speed-up"], [
            (f"1 × {THREADS} threads", f"{one['wall_seconds']:.1f}", f"{one['inference_seconds']:.1f}", "1.00"),
            ("2 shards × 1 thread", f"{two['wall_seconds']:.1f}", f"{two['inference_seconds']:.1f}",
             f"{ratio['shard_speedup']:.2f} (inference {ratio['shard_speedup_inference']:.2f})")]),
    ], {"size": size, "samples": n, "samples_per_second": speed, "best": best, "ratios": ratio,
        "one_process": runs["one"], "two_shards": runs["two"], "judged_on": judge,
        "targets": {"stage/script ≥ 0.90": met}}, judge == "cpu", results, scratch, keep)


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
