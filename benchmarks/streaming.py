"""Data sets larger than memory: the streaming backend on a generated 64×64 RGB JPEG set of N and 10·N images.

1. Peak RSS of prepare + soft_targets + distill (streaming format, each stage a fresh process) at N and
   10·N: the growth must stay ≤ 1.2× (memory flat in N).
2. Loader throughput (decoded + random-resized-crop + flip, 2 workers): the streaming loader vs a plain
   PIL + `DataLoader` loop over the same files (target ≥ 0.8×) and vs the default image student's
   training step rate (cnn2d, batch 128; target ≥ 1×).
3. Soft-target generation with a conv teacher (ResNet) ≥ 0.9× the fastest raw batched inference of the
   same model (eager or channels_last, on decoded tensors in memory) measured in the same run.

Usage: python benchmarks/streaming.py [--quick|--dry] [--keep]. The image set is cached under
benchmarks/results/tmp/ (gitignored) so a rerun skips generating it.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.cli import run_main  # noqa: E402
from harness.env import BENCH, THREADS, TMP, child_env, setup  # noqa: E402
from harness.machine import loaded  # noqa: E402
from harness.profiles import quiet_training  # noqa: E402
from harness.results import finish  # noqa: E402
from harness.tables import table, verdict  # noqa: E402

SIZES = {"full": 20_000, "quick": 2_000, "dry": 200}  # N; the large set is 10·N
CLASSES = 10
HW = 64
BATCH = 128
TEACHER = {"name": "resnet", "kwargs": {"width": 8, "depth": 1, "stages": 3}}  # the conv teacher of target 3
STUDENT = {"name": "cnn2d", "kwargs": {}}  # the image student of target 2: CNN2d's defaults (32, 64 channels)
# The RSS runs (target 1) use small conv nets: memory does not depend on a model's cost, and a 10·N epoch of
# the larger ones would take hours on 2 shared cores.
SMALL = {"name": "cnn2d", "kwargs": {"channels": [8]}}


# ---------------------------------------------------------------- the image set

def _write_images(args) -> None:
    import numpy as np
    from PIL import Image

    root, lo, hi = args
    rng = np.random.default_rng(lo)
    yy, xx = np.mgrid[0:HW, 0:HW]
    for i in range(lo, hi):
        c = i % CLASSES
        # a class-dependent smooth pattern plus noise: real JPEG statistics, not flat colour
        base = 127 + 100 * np.sin((xx * (c + 1) + yy * (CLASSES - c)) / 9.0)[..., None] * np.array([1, 0.6, 0.3])
        img = np.clip(base + rng.normal(0, 25, (HW, HW, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"c{c}" / f"{i:07d}.jpg", quality=90)


def image_set(n: int) -> Path:
    """An ImageFolder of n JPEGs (cached); the first n // 10 per class are hard-linked into a smaller set."""
    root = TMP / f"streaming-jpeg-{n}"
    done = root / ".complete"
    if not done.is_file():
        for c in range(CLASSES):
            (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        step = 2000
        with Pool(2) as pool:
            pool.map(_write_images, [(root, lo, min(lo + step, n)) for lo in range(0, n, step)])
        done.write_text("ok")
    return root


def subset(big: Path, n: int) -> Path:
    root = big.parent / f"{big.name}-first-{n}"
    if not (root / ".complete").is_file():
        for c in range(CLASSES):
            (root / f"c{c}").mkdir(parents=True, exist_ok=True)
            files = sorted((big / f"c{c}").iterdir())[: n // CLASSES]
            for f in files:
                target = root / f"c{c}" / f.name
                if not target.exists():
                    os.link(f, target)
        (root / ".complete").write_text("ok")
    return root


def params(source: Path, n: int) -> dict:
    val = max(n // 50, 20)
    return quiet_training({
        "seed": 0,
        "data": {"source": f"imagefolder:{source}", "format": "streaming", "val_size": val, "test_size": val,
                 "transfer_size": 0, "image_size": [HW, HW]},
        "teacher": {"model": SMALL, "train": {"epochs": 1}},
        "student": {"model": SMALL, "train": {"epochs": 1, "batch_size": BATCH}},
        "soft_targets": {"batch_size": 256, "splits": ["train", "val"]},
        "distill": {"use_transfer": False, "train": {"epochs": 1, "batch_size": BATCH, "lr": 0.001,
                                                      "num_workers": 2}},
    })


# ---------------------------------------------------------------- 1. peak RSS per stage process

CHILD = """
import json, resource, sys, threading, time
sys.path.insert(0, {bench!r})
# ru_maxrss mixes anonymous memory with file-backed pages (memory-mapped Arrow splits count in RSS but the
# kernel can drop them): sample /proc/self/status to report the peak of each kind separately
peaks = {{"RssAnon": 0, "RssFile": 0}}
def _sample():
    while True:
        for ln in open("/proc/self/status"):
            k = ln.split(":")[0]
            if k in peaks:
                peaks[k] = max(peaks[k], int(ln.split()[1]))
        time.sleep(0.02)
threading.Thread(target=_sample, daemon=True).start()
import torch
from harness.env import THREADS
torch.set_num_threads(THREADS)  # MLflow: the parent's store (its schema is created once)
from kdflow.config import validate
from kdflow.stages.registry import run_stage
{prelude}
t0 = time.perf_counter()
paths = lambda d: {{k: __import__("pathlib").Path(v) for k, v in json.loads(d).items()}}
summary = run_stage({stage!r}, validate(json.loads({raw!r})), paths({inputs!r}), paths({outputs!r}))
ru_self, ru_kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print("RESULT " + json.dumps({{"seconds": time.perf_counter() - t0, "samples": summary.get("samples"),
      "samples_per_second": summary.get("samples_per_second"),
      "rss_mb": ru_self.ru_maxrss / 1024, "worker_rss_mb": ru_kids.ru_maxrss / 1024,
      "anon_peak_mb": peaks["RssAnon"] / 1024, "file_peak_mb": peaks["RssFile"] / 1024}}))
"""

TEACHER_PRELUDE = """
from kdflow.data.reader import load_info
from kdflow.models import build_model, save_model
from kdflow.stages.common import spec_for
from kdflow.config import ModelSpec
import torch
torch.manual_seed(0)
spec = spec_for(ModelSpec(**{teacher!r}), load_info({data!r}))
save_model(build_model(spec), __import__("pathlib").Path({out!r}), spec, role="teacher")
"""


def in_child(stage: str, raw: dict, inputs: dict, outputs: dict, prelude: str = "") -> dict:
    code = CHILD.format(bench=str(BENCH), prelude=prelude, stage=stage, raw=json.dumps(raw),
                        inputs=json.dumps({k: str(v) for k, v in inputs.items()}),
                        outputs=json.dumps({k: str(v) for k, v in outputs.items()}))
    env = {**child_env(THREADS), "KDFLOW_PROGRESS": "lines", "KDFLOW_PROGRESS_SECONDS": "30"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if p.returncode:
        raise RuntimeError(f"{stage} failed ({p.returncode}): {p.stderr[-3000:]}")
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def soft_targets_child(raw: dict, data: Path, teacher_spec: dict, work: Path) -> dict:
    """The soft_targets stage in its own process, on a teacher saved (untrained) by the same process."""
    prelude = TEACHER_PRELUDE.format(teacher=teacher_spec, data=str(data), out=str(work / "teacher"))
    return in_child("soft_targets", raw, {"data": data, "teacher": work / "teacher"}, {"soft_targets": work / "st"},
                    prelude)


def rss_pipeline(source: Path, n: int, work: Path) -> dict[str, dict]:
    raw = params(source, n)
    data, teacher, st, student = work / "data", work / "teacher", work / "st", work / "student"
    out = {"prepare": in_child("prepare", raw, {}, {"data": data})}
    prelude = TEACHER_PRELUDE.format(teacher=SMALL, data=str(data), out=str(teacher))
    out["soft_targets"] = in_child("soft_targets", raw, {"data": data, "teacher": teacher},
                                   {"soft_targets": st}, prelude)
    out["distill"] = in_child("distill", raw, {"data": data, "soft_targets": st},
                              {"model": student, "checkpoints": work / "ckpt"})
    return out


# ---------------------------------------------------------------- 2. loader throughput

def _plain_aug(data: bytes, seed: int):
    """The plain loop's decode + random-resized-crop + flip: PIL and numpy, nothing of kdflow's."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    area = w * h * rng.uniform(0.35, 1.0)
    ar = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw, ch = min(w, math.sqrt(area * ar)), min(h, math.sqrt(area / ar))
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    im = im.resize((HW, HW), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0


class PlainFiles:
    """torch Dataset over image files: read, decode, crop; the default collate stacks them."""

    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return _plain_aug(self.files[i].read_bytes(), i), int(self.files[i].parent.name[1:])


def rate(loader, limit: int) -> float:
    """Samples/s over up to `limit` samples, the first batch (worker start-up) excluded."""
    it = iter(loader)
    first = next(it)
    n, t0 = 0, time.perf_counter()
    for batch in it:
        n += len(batch[1])
        if n >= limit:
            break
    if not n:  # a one-batch set (--dry): count the first batch, start-up included
        return len(first[1]) / (time.perf_counter() - t0 + 1e-9)
    return n / (time.perf_counter() - t0)


def loader_rates(source: Path, data: Path, limit: int, repeats: int) -> dict[str, list[float]]:
    import torch
    from torch.utils.data import DataLoader

    from kdflow.data.module import KDDataModule

    files = sorted(source.rglob("*.jpg"))
    out: dict[str, list[float]] = {"streaming": [], "plain": []}
    for _ in range(repeats):  # interleaved: load drift hits both alike
        dm = KDDataModule(data, BATCH, 0, num_workers=2)
        out["streaming"].append(rate(dm.train_dataloader(), limit))
        plain = DataLoader(PlainFiles(files), batch_size=BATCH, shuffle=True, num_workers=2,
                           generator=torch.Generator().manual_seed(0))
        out["plain"].append(rate(plain, limit))
    return out


def student_step_rate(info: dict, steps: int) -> float:
    """The default image student's training step (forward, backward, AdamW) on random batches, samples/s."""
    import torch
    import torch.nn.functional as F

    from kdflow.config import ModelSpec
    from kdflow.models import build_model
    from kdflow.stages.common import spec_for

    model = build_model(spec_for(ModelSpec(**STUDENT), info)).train()
    opt = torch.optim.AdamW(model.parameters(), fused=True)
    x, y = torch.rand(BATCH, 3, HW, HW), torch.randint(0, CLASSES, (BATCH,))
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        best = max(best, steps * BATCH / (time.perf_counter() - t0))
    return best


# ---------------------------------------------------------------- 3. soft targets vs raw inference

def raw_inference(teacher: Path, data: Path, samples: int, batch: int) -> dict[str, float]:
    """Fastest batched inference of the teacher on decoded tensors in memory: eager and channels_last."""
    import torch

    from kdflow.data.reader import load_info
    from kdflow.data.streaming import iter_split
    from kdflow.models import load_model

    info = load_info(data)
    xs, n = [], 0
    for x, _, _ in iter_split(data, "train", info, batch, rows=(0, samples)):
        xs.append(x)
        n += len(x)
    out = {}
    for name in ("eager", "channels_last"):
        model, _ = load_model(teacher)
        model.eval()
        fmt = torch.channels_last if name == "channels_last" else torch.contiguous_format
        model = model.to(memory_format=fmt)
        with torch.inference_mode():
            model(xs[0].contiguous(memory_format=fmt))  # warm-up
            best = 0.0
            for _ in range(2):
                t0 = time.perf_counter()
                for x in xs:
                    model(x.contiguous(memory_format=fmt))
                best = max(best, n / (time.perf_counter() - t0))
        out[name] = best
    return out


def run(size: str, results: Path, keep: bool = False) -> dict:
    import torch

    from kdflow.data.reader import load_info

    n = SIZES[size]
    scratch = setup()
    load_before = os.getloadavg()
    big = image_set(10 * n)
    small = subset(big, n)
    # N first, then what only needs N (a failure shows in minutes), then the long 10·N run
    rss = {"N": rss_pipeline(small, n, scratch / "N")}
    data_n = scratch / "N" / "data"
    info = load_info(data_n)
    (scratch / "conv").mkdir()
    conv = soft_targets_child(params(small, n), data_n, TEACHER, scratch / "conv")
    st_rate = conv["samples_per_second"]
    torch.set_num_threads(THREADS)
    raw_inf = raw_inference(scratch / "conv" / "teacher", data_n, min(n, 4096), 256)
    limit = {"full": 6000, "quick": 2000, "dry": 200}[size]
    loaders = loader_rates(small, data_n, limit, 2 if size != "dry" else 1)
    step = student_step_rate(info, {"full": 10, "quick": 5, "dry": 2}[size])
    rss["10N"] = rss_pipeline(big, 10 * n, scratch / "10N")
    load_after = os.getloadavg()

    peak = {k: max(v["rss_mb"] for v in rss[k].values()) for k in rss}
    growth = peak["10N"] / peak["N"]
    anon = {k: max(v["anon_peak_mb"] for v in rss[k].values()) for k in rss}
    anon_growth = anon["10N"] / anon["N"]
    best_stream, best_plain = max(loaders["streaming"]), max(loaders["plain"])
    fastest = max(raw_inf.values())
    # name: (measured ratio, goal); the results JSON stores {value, target, met} as serving's (harness.goals)
    goals = {"peak RSS growth N→10N": (growth, 1.2, "<="),
             "streaming loader / plain PIL + DataLoader": (best_stream / best_plain, 0.8, ">="),
             "streaming loader / student step rate": (best_stream / step, 1.0, ">="),
             "soft targets / fastest raw inference": (st_rate / fastest, 0.9, ">=")}
    scored = {k: {"value": round(v, 3), "target": f"{op} {g}", "met": v <= g if op == "<=" else v >= g}
              for k, (v, g, op) in goals.items()}
    rows = [(stage, f"{rss['N'][stage]['rss_mb']:,.0f}", f"{rss['10N'][stage]['rss_mb']:,.0f}",
             f"{rss['10N'][stage]['rss_mb'] / rss['N'][stage]['rss_mb']:.2f}×",
             f"{rss['N'][stage]['worker_rss_mb']:,.0f} / {rss['10N'][stage]['worker_rss_mb']:,.0f}",
             f"{rss['N'][stage]['anon_peak_mb']:,.0f} / {rss['10N'][stage]['anon_peak_mb']:,.0f}",
             f"{rss['N'][stage]['file_peak_mb']:,.0f} / {rss['10N'][stage]['file_peak_mb']:,.0f}",
             f"{rss['N'][stage]['seconds']:.0f} / {rss['10N'][stage]['seconds']:.0f}")
            for stage in ("prepare", "soft_targets", "distill")]
    rows.append(("**peak of the three**", f"{peak['N']:,.0f}", f"{peak['10N']:,.0f}",
                 f"**{growth:.2f}×** (target ≤ 1.2×: {verdict(scored['peak RSS growth N→10N']['met'])})", "",
                 f"{anon['N']:,.0f} / {anon['10N']:,.0f} ({anon_growth:.2f}×)", "", ""))
    load = f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores, shared)"
    return finish("streaming", [
        f"### Streaming data — {n:,} and {10 * n:,} generated {HW}×{HW} RGB JPEGs, {load}",
        f"Peak RSS: each stage in its own process, streaming format, small conv teacher/student {SMALL['kwargs']}.",
        table(["stage (own process)", f"peak RSS MB, N={n:,}", f"peak RSS MB, 10N={10 * n:,}", "growth",
                 "loader-worker peak MB N / 10N", "anonymous peak MB N / 10N",
                 "file-backed peak MB N / 10N (mmap, reclaimable)", "seconds N / 10N"], rows),
        table(["loader (decode + random-resized-crop + flip, 2 workers, batch 128)", "samples/s (best of runs)",
                 "ratio"], [
            ("plain PIL + `DataLoader` over the JPEG files", f"{best_plain:,.0f}", "1.00"),
            ("kdflow streaming loader (Arrow splits)", f"{best_stream:,.0f}",
             f"{best_stream / best_plain:.2f} (target ≥ 0.8: "
             f"{verdict(scored['streaming loader / plain PIL + DataLoader']['met'])})"),
            ("default image student's training step (cnn2d, 2 threads, no loading)", f"{step:,.0f}",
             f"loader / step = {best_stream / step:.2f} (target ≥ 1: "
             f"{verdict(scored['streaming loader / student step rate']['met'])})")]),
        table([f"teacher {TEACHER['name']} {TEACHER['kwargs']}", "samples/s", "ratio"], [
            ("raw batched inference, eager (decoded tensors in memory)", f"{raw_inf['eager']:,.0f}",
             f"{raw_inf['eager'] / fastest:.2f}"),
            ("raw batched inference, channels_last", f"{raw_inf['channels_last']:,.0f}",
             f"{raw_inf['channels_last'] / fastest:.2f}"),
            ("soft_targets stage on the N set (decode in 2 workers + inference + store; stage's own timing)",
             f"{st_rate:,.0f}", f"{st_rate / fastest:.2f} of the fastest (target ≥ 0.9: "
             f"{verdict(scored['soft targets / fastest raw inference']['met'])})")]),
    ], {"size": size, "n": n, "rss": rss, "peak_rss_mb": peak, "rss_growth": growth,
        "anon_peak_mb": anon, "anon_growth": anon_growth, "loader": loaders,
        "student_step_samples_per_s": step, "raw_inference": raw_inf, "soft_targets_samples_per_s": st_rate,
        "soft_targets_conv_teacher": conv, "models": {"rss_runs": SMALL, "teacher": TEACHER, "student": STUDENT},
        "load_average": {"before": load_before, "after": load_after}, "targets": scored},
        loaded(), results, scratch, keep)


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
