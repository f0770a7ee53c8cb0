"""Cost of a model: FLOPs per sample, batch-1 latency percentiles and batched throughput (CPU)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

THROUGHPUT_ROUNDS = 15  # fewest batch rounds `costs` times per model


def flops_per_sample(model: torch.nn.Module, shape: list[int]) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, *shape))
    return int(counter.get_total_flops())


def interleaved(fns: dict, rounds: int, warmup: int = 2, calls: int = 1,
                clock=time.perf_counter) -> dict[str, list[float]]:
    """Seconds per call of each no-argument `fns[k]`, measured in interleaved rounds: every round runs
    each fn `calls` times in turn, so load on a shared machine hits all of them alike, in the reverse
    order every other round (no fn always runs right after the same one). `warmup` rounds run first and
    are not recorded. Take the median of the returned per-round times: on this 2-core machine under
    load the minimum of 15-25 rounds of a 2-thread batch put copies of one model 10-48 % apart, the
    median 0-7 % (a lucky uncontended round sets a minimum; it does not move a median)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns.items())
    for r in range(warmup + rounds):
        for k, fn in order if r % 2 == 0 else order[::-1]:
            t0 = clock()
            for _ in range(calls):
                fn()
            if r >= warmup:
                times[k].append((clock() - t0) / calls)
    return times


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


def costs(engines: dict, eager: dict[str, torch.nn.Module], shape: list[int], repeats: int, batch: int,
          threads: int) -> dict[str, dict[str, float]]:
    """Latency (batch 1) and throughput (`batch`) of every engine, honestly comparable: a fixed thread
    count, warm-up rounds not recorded, interleaved rounds of all models (load hits them alike),
    percentiles / median over rounds (at least 15 batch rounds: with 6, two copies of one model measured
    19 % apart under load). FLOPs from the eager modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        one, many = torch.randn(1, *shape), torch.randn(batch, *shape)
        b1 = interleaved({k: (lambda e=e: e(one)) for k, e in engines.items()}, repeats, max(repeats // 10, 3))
        bn = interleaved({k: (lambda e=e: e(many)) for k, e in engines.items()}, max(repeats // 10, THROUGHPUT_ROUNDS),
                         2)
    finally:
        torch.set_num_threads(before)
    return {k: {"latency_p50_ms": float(np.percentile(b1[k], 50) * 1e3),
                "latency_p95_ms": float(np.percentile(b1[k], 95) * 1e3),
                "throughput_per_s": float(batch / np.median(bn[k])),
                "flops": flops_per_sample(eager[k], shape)} for k in engines}
