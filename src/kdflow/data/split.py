"""Deterministic stratified splits, normalization statistics and the leakage check."""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.model_selection import train_test_split

from kdflow.errors import KdflowError


def _count(size: float, n: int) -> int:
    return int(round(size * n)) if size < 1 else int(size)


def stratified(idx: np.ndarray, y: np.ndarray, size: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Split `idx` into (rest, part) with `size` (fraction or count) in `part`, stratified by `y[idx]`."""
    k = _count(size, len(idx))
    if k <= 0 or k >= len(idx):
        raise KdflowError(f"{what} of {size} leaves no samples on one side of a {len(idx)}-sample split")
    labels = y[idx]
    strat = labels if np.bincount(labels).min(initial=len(idx)) >= 2 and k >= len(np.unique(labels)) else None
    if strat is not None and len(idx) - k < len(np.unique(labels)):
        strat = None
    rest, part = train_test_split(idx, test_size=k, random_state=seed, stratify=strat)
    return np.sort(rest), np.sort(part)


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean/std over train (channel = axis 1; features for (N, F) tables)."""
    axes = (0, *range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    std[std < 1e-8] = 1.0
    return mean.astype(float).tolist(), std.astype(float).tolist()


def sample_hashes(x: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(x.reshape(len(x), -1))
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=12).hexdigest() for row in flat])


def leakage(splits: dict[str, np.ndarray]) -> dict[str, int]:
    """Exact-duplicate samples across every pair of splits, by content hash."""
    hashes = {name: set(sample_hashes(x)) for name, x in splits.items()}
    names = list(hashes)
    return {f"{a}~{b}": len(hashes[a] & hashes[b]) for i, a in enumerate(names) for b in names[i + 1:]}
