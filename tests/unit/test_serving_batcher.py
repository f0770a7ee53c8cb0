"""Micro-batching: concurrent requests share a forward pass; a lone request does not wait."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from kdflow.serving.batcher import MicroBatcher


class Recorder:
    """A forward pass that records the batch sizes it was called with (runs in the worker thread)."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.sizes: list[int] = []
        self.delay = delay
        self.fail = fail
        self.threads: set[str] = set()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise ValueError("boom")
        time.sleep(self.delay)
        self.sizes.append(len(x))
        return x.sum(axis=1)


async def _run(forward, n: int, max_batch: int, max_wait_s: float, arriving: int = 0):
    pool = ThreadPoolExecutor(1, thread_name_prefix="fwd")
    batcher = MicroBatcher(forward, max_batch, max_wait_s, pool)
    batcher.start()
    try:
        async def one(i: int):
            x = np.full((1, 3), i, np.float32)
            result, rows = await batcher.submit(x)
            return float(result[rows][0])
        for _ in range(arriving):
            batcher.begin()
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await batcher.stop()
        pool.shutdown()


def test_concurrent_requests_share_forward_passes_and_get_their_own_rows():
    fwd = Recorder(delay=0.005)
    out = asyncio.run(_run(fwd, 64, max_batch=16, max_wait_s=0.002))
    assert out == [3.0 * i for i in range(64)]          # each request got its own row back
    assert max(fwd.sizes) == 16 and sum(fwd.sizes) == 64  # batched, never above max_batch
    assert len(fwd.sizes) <= 8
    assert fwd.threads == {"fwd_0"}                      # off the event loop


def test_fast_forward_passes_run_on_the_event_loop_slow_ones_in_the_worker():
    async def scenario(delay: float) -> set[str]:
        fwd = Recorder(delay=delay)
        pool = ThreadPoolExecutor(1, thread_name_prefix="fwd")
        batcher = MicroBatcher(fwd, 8, 0.0, pool, inline_below_s=0.002)
        batcher.start()
        try:
            for i in range(4):  # one at a time: every request is its own forward pass
                result, rows = await batcher.submit(np.full((1, 2), i, np.float32))
                assert float(result[rows][0]) == 2.0 * i
        finally:
            await batcher.stop()
            pool.shutdown()
        return fwd.threads
    assert asyncio.run(scenario(0.0)) == {"fwd_0", threading.main_thread().name}  # timed in the worker first
    assert asyncio.run(scenario(0.01)) == {"fwd_0"}  # slower than inline_below_s: never blocks the loop


def test_lone_request_is_not_held_for_max_wait():
    fwd = Recorder()
    started = time.perf_counter()
    asyncio.run(_run(fwd, 1, max_batch=16, max_wait_s=1.0))
    assert time.perf_counter() - started < 0.5  # nobody else arriving: dispatched at once


def test_waits_at_most_max_wait_for_requests_still_arriving():
    fwd = Recorder()
    started = time.perf_counter()
    asyncio.run(_run(fwd, 1, max_batch=16, max_wait_s=0.2, arriving=1))  # one never finishes arriving
    assert 0.15 < time.perf_counter() - started < 2.0


def test_forward_errors_reach_every_request_and_the_loop_survives():
    async def scenario():
        pool = ThreadPoolExecutor(1)
        fwd = Recorder(fail=True)
        batcher = MicroBatcher(fwd, 8, 0.001, pool)
        batcher.start()
        try:
            results = await asyncio.gather(*(batcher.submit(np.zeros((1, 2), np.float32)) for _ in range(3)),
                                           return_exceptions=True)
            assert all(isinstance(r, ValueError) for r in results)
            fwd.fail = False
            result, rows = await batcher.submit(np.ones((1, 2), np.float32))
            assert float(result[rows][0]) == 2.0
        finally:
            await batcher.stop()
            pool.shutdown()
    asyncio.run(scenario())


def test_submit_before_start_fails_clearly():
    async def scenario():
        batcher = MicroBatcher(Recorder(), 8, 0.001, ThreadPoolExecutor(1))
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit(np.zeros((1, 2), np.float32))
    asyncio.run(scenario())
