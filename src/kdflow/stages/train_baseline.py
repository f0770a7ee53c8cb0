"""Stage `train_baseline`: the student architecture on hard labels alone — the no-KD reference."""

from __future__ import annotations

from pathlib import Path

from kdflow.config import Params
from kdflow.stages.common import train_on_labels


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    return train_on_labels(cfg, "train_baseline", "baseline", inputs, outputs)
