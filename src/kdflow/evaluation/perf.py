"""Cost of a model: FLOPs per sample, batch-1 latency percentiles and batched throughput (CPU)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


def flops_per_sample(model: torch.nn.Module, shape: list[int]) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, *shape))
    return int(counter.get_total_flops())


def timings(fn, x, repeats: int) -> list[float]:
    """Seconds per `fn(x)` call, after a warm-up of a tenth as many calls (at least 3)."""
    for _ in range(max(repeats // 10, 3)):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return times


@torch.inference_mode()
def latency(model: torch.nn.Module, shape: list[int], repeats: int, batch: int = 1) -> list[float]:
    """Seconds per forward of `batch` samples, after warm-up."""
    return timings(model, torch.randn(batch, *shape), repeats)


def cost(model: torch.nn.Module, shape: list[int], repeats: int, batch: int) -> dict[str, float]:
    b1 = np.array(latency(model, shape, repeats))
    bn = np.array(latency(model, shape, max(repeats // 10, 5), batch))
    return {
        "latency_p50_ms": float(np.percentile(b1, 50) * 1e3),
        "latency_p95_ms": float(np.percentile(b1, 95) * 1e3),
        "throughput_per_s": float(batch / np.median(bn)),
        "flops": flops_per_sample(model, shape),
    }
