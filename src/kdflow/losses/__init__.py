"""KD losses by name. Each takes (student_logits, teacher_logits, y, cfg) -> scalar loss."""

from __future__ import annotations

from collections.abc import Callable

import torch

from kdflow.errors import KdflowError
from kdflow.losses.kd import kd_loss

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, object], torch.Tensor]

REGISTRY: dict[str, LossFn] = {
    "kd": lambda s, t, y, cfg: kd_loss(s, t, y, cfg.temperature, cfg.alpha),
}


def get_loss(name: str) -> LossFn:
    if name not in REGISTRY:
        raise KdflowError(f"unknown distill.loss '{name}'; allowed: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]
