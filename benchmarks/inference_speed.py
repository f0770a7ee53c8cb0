"""Inference speed: each built-in model × backend (eager, engine-torch, onnxruntime) × batch (1, 256).

Samples/s as the median of interleaved rounds (every round runs each backend once, warm-up rounds not
recorded, 2 threads), the ratio to eager, and the backend `kdflow.inference.choose` picks for that
batch size (what a training stage records in model.json, measured at batch 1 and 256) with what the
choice cost at save time. Honesty check: two copies of one model timed the way evaluate times its
models (`perf.costs`) must measure within 10 % of each other. Load average goes with results.

    python benchmarks/inference_speed.py [--quick | --dry]     (make bench-inference)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.cli import run_main  # noqa: E402
from harness.env import THREADS, setup  # noqa: E402
from harness.machine import loaded, machine  # noqa: E402
from harness.results import finish  # noqa: E402
from harness.tables import table, verdict  # noqa: E402

MODELS = {  # name: (arch, kwargs, input shape)
    "mlp 1200-1200 (Hinton teacher)": ("mlp", {"hidden": [1200, 1200]}, [1, 28, 28]),
    "mlp 800-800 (Hinton student)": ("mlp", {"hidden": [800, 800]}, [1, 28, 28]),
    "cnn1d (MNIST-1D ConvBase)": ("cnn1d", {}, [1, 40]),
    "cnn2d 32-64 + BN": ("cnn2d", {}, [1, 28, 28]),
    "resnet w16 (teacher)": ("resnet", {"width": 16}, [1, 28, 28]),
}
BATCHES = (1, 256)
SIZES = {"full": (9, 2), "quick": (5, 1), "dry": (2, 1)}  # (rounds, warm-up rounds)
TWIN_TOLERANCE = 0.10


def _build(arch: str, kwargs: dict, shape: list[int]):
    import torch

    from kdflow.models import build_model

    spec = {"name": arch, "kwargs": kwargs, "input_shape": shape, "num_classes": 10, "mean": [0.13], "std": [0.31]}
    torch.manual_seed(0)
    return build_model(spec).eval(), spec


def run(size: str, results: Path, keep: bool = False) -> dict:
    import numpy as np
    import torch

    from kdflow import inference as I
    from kdflow.evaluation.perf import costs, interleaved
    from kdflow.progress import Ticker

    rounds, warmup = SIZES[size]
    scratch = setup()
    load_before = machine()["load_avg_1m"]
    models = dict(list(MODELS.items())[1:3]) if size == "dry" else MODELS
    rows, doc_rows, wins = [], [], []
    ticker = Ticker("inference_speed", total=len(models) * len(BATCHES), unit="cases", every=0)
    for label, (arch, kwargs, shape) in models.items():
        model, spec = _build(arch, kwargs, shape)
        started = time.perf_counter()
        choice = I.choose(model, spec)
        choice_s = time.perf_counter() - started
        engines = {b: I.engine(model, spec, b) for b in ("eager", "torch", "onnx")}
        calib = torch.randn(128, *shape) * model.std + model.mean
        engines["int8"] = I.int8_engine(model, spec, calib)
        with torch.inference_mode():  # int8 fidelity: top-1 agreement with fp32 on held-out random inputs
            probe = torch.randn(512, *shape) * model.std + model.mean
            agree = float((engines["int8"].predict(probe).argmax(1) == model(probe).argmax(1)).float().mean())
        for batch in BATCHES:
            x = torch.randn(batch, *shape)
            calls = 32 if batch == 1 else 1  # batch 1: several calls per timing, less clock noise
            t = interleaved({k: (lambda e=e, x=x: e(x)) for k, e in engines.items()}, rounds, warmup, calls)
            sps = {k: batch / float(np.median(v)) for k, v in t.items()}
            chosen = choice["by_batch"][str(batch)] if str(batch) in choice["by_batch"] else choice["backend"]
            ratio = {k: v / sps["eager"] for k, v in sps.items()}
            wins.append(ratio[chosen] >= 1.0)
            cells = [f"{sps[k]:,.0f} ({ratio[k]:.2f}×)" for k in ("eager", "torch", "onnx", "int8")]
            int8 = f"{ratio['int8'] / ratio['onnx']:.2f}× ({100 * agree:.0f} %)"
            best = max(("torch", "onnx"), key=lambda k: sps[k])
            rows.append((label, batch, *cells, chosen, f"{ratio[chosen]:.2f}×", f"{sps[chosen] / sps[best]:.2f}",
                         f"{choice_s:.1f}", int8))
            doc_rows.append({"model": label, "batch": batch, "samples_per_s": sps, "ratio_to_eager": ratio,
                             "chosen": chosen, "chosen_over_best": sps[chosen] / sps[best],
                             "choice_seconds": choice_s, "choice_measurement": choice,
                             "int8_vs_onnx_fp32": ratio["int8"] / ratio["onnx"], "int8_top1_agreement": agree})
            ticker.update(1, f"{label} b{batch}")
    ticker.finish()

    model, spec = _build(*MODELS["cnn2d 32-64 + BN"])  # two copies, timed as evaluate times its models
    twin = {k: I.engine(model, spec, "torch") for k in ("copy A", "copy B")}
    reps = {"full": 200, "quick": 60, "dry": 10}[size]
    c = costs(twin, {k: model for k in twin}, spec["input_shape"], reps, 256, THREADS)
    gaps = {m: abs(c["copy A"][m] / c["copy B"][m] - 1) for m in ("latency_p50_ms", "throughput_per_s")}
    twin_ok, chosen_ok = max(gaps.values()) <= TWIN_TOLERANCE, all(wins)
    load_after = machine()["load_avg_1m"]
    near = sum(r["chosen_over_best"] >= 0.9 for r in doc_rows)
    line = (f"Verdict: the chosen backend is ≥ eager on {sum(wins)}/{len(wins)} model×batch rows "
            f"({verdict(chosen_ok)}) and within 10 % of the faster of torch / onnxruntime on {near}/{len(doc_rows)} "
            f"(choice measured at save time in ≤ {max(r['choice_seconds'] for r in doc_rows):.1f} s); "
            f"two copies of one model measure within "
            f"{100 * max(gaps.values()):.1f} % of each other (target ≤ 10 %: {verdict(twin_ok)}); "
            f"load average {load_before:.1f} → {load_after:.1f} on {machine()['cores']} cores.")
    return finish("inference_speed" if size == "full" else f"inference_speed-{size}", [
        line,
        f"### Inference throughput — samples/s (ratio to eager), median of {rounds} interleaved rounds, "
        f"{THREADS} threads",
        table(["model", "batch", "eager (samples/s)", "engine torch (samples/s)", "onnxruntime (samples/s)",
                 "onnx int8 QDQ (samples/s)", "chosen (auto)", "chosen / eager", "chosen / best of torch, onnx",
                 "choice cost at save (s)", "int8 / onnx fp32 (top-1 agreement)"], rows),
        "int8 (onnxruntime static QDQ, per-channel, calibrated on 128 random inputs) is never chosen by `auto`; "
        f"it is faster than onnx fp32 on {sum(r['int8_vs_onnx_fp32'] > 1 for r in doc_rows)}/{len(doc_rows)} rows.",
        "### Same model twice (evaluate's timing: warm-up, fixed threads, interleaved rounds, median)",
        f"Batch rounds: {max(reps // 10, 15)}; rounds alternate the copies' order.",
        table(["", "latency p50 (ms, batch 1)", "throughput (samples/s, batch 256)"],
                [(k, f"{v['latency_p50_ms']:.3f}", f"{v['throughput_per_s']:,.0f}") for k, v in c.items()]
                + [("gap", f"{100 * gaps['latency_p50_ms']:.1f} %", f"{100 * gaps['throughput_per_s']:.1f} %")]),
    ], {"size": size, "verdict": line, "rows": doc_rows, "twin": c, "twin_gap": gaps,
        "load_avg_1m": {"before": load_before, "after": load_after},
        "targets": {"chosen ≥ eager": chosen_ok, "twin within 10 %": twin_ok,
                    "chosen within 10 % of best": near == len(doc_rows)}}, loaded(), results, scratch, keep)


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
