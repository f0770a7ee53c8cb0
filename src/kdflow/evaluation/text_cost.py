"""Quality and CPU cost of a text model on the real test sentences, tokenization timed separately.

Latency at batch 1 and throughput at batch 32 (`evaluate.throughput_batch`) run over consecutive test
sentences, each batch tokenized with the dataset's tokenizer and padded to its own longest sample, as
the server does. `throughput_per_s` counts tokenization + forward (what a client sees);
`model_throughput_per_s` the forward alone, `tokenize_per_s` the tokenizer alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from kdflow.data.tokenized import TOKENIZER_DIR, load_tokenizer, split_texts


def encode(tok, a: list[str], b: list[str] | None, max_length: int) -> torch.Tensor:
    enc = tok(a, b, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
              return_attention_mask=False, return_token_type_ids=False)
    return enc["input_ids"]


def _batches(a: list[str], b: list[str] | None, size: int, count: int):
    n = len(a)
    for k in range(count):
        i = (k * size) % max(n - size + 1, 1)
        yield a[i:i + size], (b[i:i + size] if b is not None else None)


@torch.inference_mode()
def cost(model: torch.nn.Module, data_dir: Path, info: dict, repeats: int, batch: int) -> dict[str, float]:
    t = info["tokenizer"]
    tok = load_tokenizer(Path(data_dir) / TOKENIZER_DIR, t["truncation_side"])
    a, b = split_texts(data_dir, "test")
    model.eval()
    for xa, xb in _batches(a, b, 1, 3):  # warm-up
        model(encode(tok, xa, xb, t["max_length"]))
    tok_s, fwd_s = [], []
    for xa, xb in _batches(a, b, 1, repeats):
        t0 = time.perf_counter()
        x = encode(tok, xa, xb, t["max_length"])
        t1 = time.perf_counter()
        model(x)
        tok_s.append(t1 - t0)
        fwd_s.append(time.perf_counter() - t1)
    n_big = max(repeats // 10, 5)
    btok = bfwd = 0.0
    for xa, xb in _batches(a, b, batch, n_big):
        t0 = time.perf_counter()
        x = encode(tok, xa, xb, t["max_length"])
        t1 = time.perf_counter()
        model(x)
        btok += t1 - t0
        bfwd += time.perf_counter() - t1
    samples = n_big * min(batch, len(a))
    fwd, e2e = np.array(fwd_s), np.array(fwd_s) + np.array(tok_s)
    x = encode(tok, a[:1], b[:1] if b is not None else None, t["max_length"])
    with FlopCounterMode(display=False) as counter:
        model(x)
    return {
        "latency_p50_ms": float(np.percentile(fwd, 50) * 1e3),
        "latency_p95_ms": float(np.percentile(fwd, 95) * 1e3),
        "latency_e2e_p50_ms": float(np.percentile(e2e, 50) * 1e3),
        "tokenize_p50_ms": float(np.percentile(tok_s, 50) * 1e3),
        "throughput_per_s": samples / (btok + bfwd),
        "model_throughput_per_s": samples / bfwd,
        "tokenize_per_s": samples / btok,
        "flops": int(counter.get_total_flops()),
    }
