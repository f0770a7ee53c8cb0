"""Inference engine speed: model × backend × batch, samples/s side by side in one run (interleaved
rounds, median), the backend `auto` chooses, and two copies of one model timed by evaluate's `costs`
(the same architecture must measure within 10 % of itself). The load average is recorded with results.

    python benchmarks/inference_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

MODELS = {  # name -> spec (Hinton's MNIST teacher/student MLPs, a small conv net with BN, a 1-D conv net)
    "mlp-1200-1200": {"name": "mlp", "kwargs": {"hidden": [1200, 1200]}, "input_shape": [1, 28, 28]},
    "mlp-800-800": {"name": "mlp", "kwargs": {"hidden": [800, 800]}, "input_shape": [1, 28, 28]},
    "cnn2d-bn": {"name": "cnn2d", "kwargs": {"channels": [16, 32], "batchnorm": True}, "input_shape": [1, 28, 28]},
    "cnn1d": {"name": "cnn1d", "kwargs": {"channels": [32, 32, 32]}, "input_shape": [1, 40]},
}
SAME_GOAL = 0.10  # two copies of one model: |ratio - 1| ≤ 10 %


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    C.setup()
    import numpy as np
    import torch

    from kdflow import inference as I
    from kdflow.evaluation.perf import costs, interleaved
    from kdflow.models import build_model

    rounds = 5 if args.quick else 15
    load_before = os.getloadavg()
    rows, chosen = [], {}
    for name, base in MODELS.items():
        spec = base | {"num_classes": 10, "mean": [0.0], "std": [1.0]}
        torch.manual_seed(0)
        model = build_model(spec).eval()
        engines = {"eager": I.eager_engine(model), "torch": I.torch_engine(model, spec),
                   "onnx": I.onnx_engine(model, spec)}
        chosen[name] = I.choose(model, spec)
        for batch in (1, 256):
            x = torch.randn(batch, *spec["input_shape"])
            calls = 50 if batch == 1 else 2
            t = interleaved({k: (lambda e=e: e(x)) for k, e in engines.items()}, rounds, 2, calls)
            sps = {k: batch / float(np.median(v)) for k, v in t.items()}
            for k, v in sps.items():
                rows.append({"model": name, "backend": k, "batch": batch, "samples_per_s": round(v, 1),
                             "ratio_vs_eager": round(v / sps["eager"], 2)})
        print(f"{name}: auto chooses {chosen[name]['backend']}", flush=True)
    # two copies of one model, timed the way evaluate times baseline vs student
    spec = MODELS["cnn2d-bn"] | {"num_classes": 10, "mean": [0.0], "std": [1.0]}
    model = build_model(spec).eval()
    twin = copy.deepcopy(model)
    res = costs({"copy-a": I.torch_engine(model, spec), "copy-b": I.torch_engine(twin, spec)},
                {"copy-a": model, "copy-b": twin}, spec["input_shape"], 100 if args.quick else 300, 256, C.THREADS)
    same = {m: res["copy-b"][m] / res["copy-a"][m] for m in ("latency_p50_ms", "throughput_per_s")}
    load_after = os.getloadavg()

    print(f"\n{'model':<15}{'backend':<8}{'batch':>6}{'samples/s':>12}{'× eager':>9}")
    for r in rows:
        print(f"{r['model']:<15}{r['backend']:<8}{r['batch']:>6}{r['samples_per_s']:>12,.0f}{r['ratio_vs_eager']:>9.2f}")
    print(f"\ntwo copies of cnn2d-bn (evaluate's costs): latency p50 ratio {same['latency_p50_ms']:.3f}, "
          f"throughput ratio {same['throughput_per_s']:.3f} (goal within {SAME_GOAL:.0%}: "
          f"{'met' if all(abs(v - 1) <= SAME_GOAL for v in same.values()) else 'MISSED'})")
    print(f"load average (1/5/15 min) before {load_before}, after {load_after}; {C.THREADS} threads")
    out = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "threads": C.THREADS, "rounds": rounds,
           "load_average_before": load_before, "load_average_after": load_after, "rows": rows,
           "auto_choice": chosen,
           "same_model_twice": {"ratios": same, "goal_within": SAME_GOAL, "costs": res,
                                "met": all(abs(v - 1) <= SAME_GOAL for v in same.values())}}
    C.RESULTS.mkdir(parents=True, exist_ok=True)
    path = C.RESULTS / ("inference_speed-quick.json" if args.quick else "inference_speed.json")
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
