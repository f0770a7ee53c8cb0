"""Stage `train_teacher`: the teacher on hard labels (with augmentation if configured)."""

from __future__ import annotations

from pathlib import Path

from kdflow.config import Params
from kdflow.stages.common import train_on_labels


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    return train_on_labels(cfg, "train_teacher", "teacher", inputs, outputs)
