"""KD losses by name, chosen in params.yaml.

Output terms (`distill.loss`) take (student_logits, teacher_logits, y, cfg: Distill) -> scalar;
a multi-teacher store reaches them already combined (`ensemble.ensemble_logits`). Feature terms
(`distill.features[].method`) take (student_feature, teacher_feature, pair: FeaturePair) -> scalar
and say whether a shape mismatch needs a trained adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kdflow.errors import KdflowError
from kdflow.losses.attention import attention_loss
from kdflow.losses.dkd import dkd_loss
from kdflow.losses.hint import hint_loss
from kdflow.losses.kd import kd_loss

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, object], torch.Tensor]

REGISTRY: dict[str, LossFn] = {
    "kd": lambda s, t, y, cfg: kd_loss(s, t, y, cfg.temperature, cfg.alpha),
    "dkd": lambda s, t, y, cfg: dkd_loss(s, t, y, cfg.temperature, cfg.alpha, cfg.dkd.tckd, cfg.dkd.nckd),
}


@dataclass(frozen=True)
class FeatureLoss:
    fn: Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]
    adapter: bool  # a student/teacher shape mismatch is bridged by a trained adapter
    conv_only: bool = False  # needs (B, C, *spatial) maps


FEATURE_REGISTRY: dict[str, FeatureLoss] = {
    "hint": FeatureLoss(lambda s, t, pair: hint_loss(s, t, pair.loss), adapter=True),
    "attention": FeatureLoss(lambda s, t, pair: attention_loss(s, t, pair.p), adapter=False, conv_only=True),
}


def get_loss(name: str) -> LossFn:
    if name not in REGISTRY:
        raise KdflowError(f"unknown distill.loss '{name}'; allowed: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def get_feature_loss(name: str) -> FeatureLoss:
    if name not in FEATURE_REGISTRY:
        raise KdflowError(f"unknown distill.features method '{name}'; allowed: "
                          f"{', '.join(sorted(FEATURE_REGISTRY))}")
    return FEATURE_REGISTRY[name]
