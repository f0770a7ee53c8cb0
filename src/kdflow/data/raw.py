"""`Raw`: what a data source loader returns to prepare (float32 inputs, int64 labels, class names)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Raw:
    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_transfer: np.ndarray | None = None  # generated unlabeled pool (mnist1d)
    info: dict = field(default_factory=dict)
