"""Soft-target throughput: the `soft_targets` stage vs a raw batched `torch.inference_mode` loop over the
same teacher and data (target ≥ 90 %), and the data split into 2 shards run as 2 `kdflow soft-targets`
processes (1 torch thread each) vs 1 process (2 threads).

Hinton's teacher (MLP 1200-1200) on random 28×28 images; the stage's throughput is end to end (load,
infer, write the float16 store, MLflow run) and, as the stage reports it, inference alone. The target is
judged on wall time, or on CPU time when other work loaded the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

SIZES = {"full": (60_000, 3), "quick": (20_000, 2), "dry": (1_000, 1)}  # (train samples, repeats)


def raw_loop(teacher: Path, data: Path, splits: list[str], batch: int) -> dict[str, float]:
    """Samples per wall and per CPU second of the plainest inference loop: one tensor, slices, no I/O."""
    import numpy as np
    import torch

    from kdflow.data.module import load_split
    from kdflow.models import load_model

    model, _ = load_model(teacher)
    x = torch.from_numpy(np.concatenate([load_split(data, s)["x"] for s in splits if (data / f"{s}.npz").is_file()]))
    with torch.inference_mode():
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
        return {"wall": len(x) / (time.perf_counter() - t0), "cpu": len(x) / (time.process_time() - c0)}


def kdflow_exe() -> list[str]:
    exe = Path(sys.executable).with_name("kdflow")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "kdflow.cli"]


def shards_wall(params: Path, data: Path, teacher: Path, out: Path, num_shards: int, threads: int) -> dict:
    """Launch `num_shards` `kdflow soft-targets` processes at once; wall time until the last one exits."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*kdflow_exe(), "soft-targets", "--params", str(params), "--data", str(data),
                               "--teacher", str(teacher), "--out", str(out / f"shard-{i}"), "--shard-index", str(i),
                               "--num-shards", str(num_shards)],
                              env=C.child_env(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    scratch = C.setup()
    judge = "cpu" if C.loaded() else "wall"
    raw, data, teacher = C.speed_fixture(scratch, samples)
    cfg = validate(raw)
    speed: dict[str, list[dict[str, float]]] = {"loop": [], "stage": [], "stage_inference": []}
    for r in range(repeats):  # interleaved, so drift in machine load hits both sides alike
        speed["loop"].append(raw_loop(teacher, data, cfg.soft_targets.splits, cfg.soft_targets.batch_size))
        s = C.stage("soft_targets", cfg, {"data": data, "teacher": teacher}, {"soft_targets": scratch / f"st-{r}"})
        speed["stage"].append({"wall": s["samples"] / s["wall_seconds"], "cpu": s["samples"] / s["cpu_seconds"]})
        speed["stage_inference"].append({"wall": s["samples_per_second"]})
        shutil.rmtree(scratch / f"st-{r}")
    n = s["samples"]
    med = {k: {kind: statistics.median(x[kind] for x in v) for kind in v[0]} for k, v in speed.items()}
    params = scratch / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    one = shards_wall(params, data, teacher, scratch / "one", 1, C.THREADS)
    two = shards_wall(params, data, teacher, scratch / "two", 2, 1)
    ratio = {"stage/loop": {kind: med["stage"][kind] / med["loop"][kind] for kind in ("wall", "cpu")},
             "stage_inference/loop": med["stage_inference"]["wall"] / med["loop"]["wall"],
             "shard_speedup": one["wall_seconds"] / two["wall_seconds"],
             "shard_speedup_inference": one["inference_seconds"] / two["inference_seconds"]}
    met = ratio["stage/loop"][judge] >= 0.90
    md = "\n\n".join([
        f"### Soft-target throughput — teacher MLP 1200-1200, {n:,} samples 28×28, batch "
        f"{cfg.soft_targets.batch_size}, {C.THREADS} threads",
        C.table(["path", "samples/s (wall)", "samples per CPU s", "vs raw loop"], [
            ("raw `torch.inference_mode` loop", f"{med['loop']['wall']:,.0f}", f"{med['loop']['cpu']:,.0f}", "1.00"),
            ("soft_targets stage, end to end", f"{med['stage']['wall']:,.0f}", f"{med['stage']['cpu']:,.0f}",
             f"{ratio['stage/loop']['wall']:.2f} wall, {ratio['stage/loop']['cpu']:.2f} CPU "
             f"(target ≥ 0.90 on {judge}: {C.verdict(met)})"),
            ("soft_targets stage, inference part", f"{med['stage_inference']['wall']:,.0f}", "—",
             f"{ratio['stage_inference/loop']:.2f} wall")]),
        C.table(["`kdflow soft-targets` processes", "wall s (incl. start-up)", "inference s", "speed-up"], [
            (f"1 × {C.THREADS} threads", f"{one['wall_seconds']:.1f}", f"{one['inference_seconds']:.1f}", "1.00"),
            ("2 shards × 1 thread", f"{two['wall_seconds']:.1f}", f"{two['inference_seconds']:.1f}",
             f"{ratio['shard_speedup']:.2f} (inference {ratio['shard_speedup_inference']:.2f})")]),
    ] + (["Machine loaded during the run (load average > cores): wall times include other processes' work."]
         if judge == "cpu" else []))
    print(md, flush=True)
    doc = {"size": size, "samples": n, "samples_per_second": speed, "median": med, "ratios": ratio,
           "one_process": one, "two_shards": two, "judged_on": judge, "targets": {"stage/loop ≥ 0.90": met},
           "markdown": md}
    C.write_result("soft_targets_speed", doc, results)
    C.cleanup(scratch, keep)
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(p)
    a = p.parse_args(argv)
    run("dry" if a.dry else "quick" if a.quick else "full", a.results, a.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
