"""FitNets hints (Romero et al. 2015): match an intermediate student feature to a teacher feature.

The student feature first passes its adapter (built from a shape probe, trained with the student,
see `kdflow.lit.features`); spatial sizes that still differ are average-pooled to the smaller one.
On text, the hidden states of padding tokens are left out (`mask`, broadcast along the token axis).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdflow.losses.registry import register_feature_loss
from kdflow.names.losses import HintParams


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two (B, C, *spatial) maps to the other's spatial size."""
    if a.dim() < 3 or a.shape[2:] == b.shape[2:]:
        return a, b
    pool = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}[a.dim()]
    size = [min(x, y) for x, y in zip(a.shape[2:], b.shape[2:])]
    return (pool(a, size) if list(a.shape[2:]) != size else a), (pool(b, size) if list(b.shape[2:]) != size else b)


def hint_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "mse",
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """mse: mean squared difference over all elements; cosine: mean over samples of 1 - cos(flattened).
    `mask` (broadcastable to the teacher feature, 1 on real tokens) zeroes padding and leaves it out of the mean."""
    s, t = match_spatial(student.float(), teacher.float())
    if mask is not None and s.shape == t.shape:
        s, t = s * mask, t * mask
    if kind == "cosine":
        return (1 - F.cosine_similarity(s.flatten(1), t.flatten(1), dim=1)).mean()
    if mask is not None and s.shape == t.shape:
        return F.mse_loss(s, t, reduction="sum") / mask.expand_as(s).sum().clamp_min(1)
    return F.mse_loss(s, t)


@register_feature_loss("hint", adapter=True, token_mask=True)
def hint(student: torch.Tensor, teacher: torch.Tensor, params: HintParams,
         mask: torch.Tensor | None = None) -> torch.Tensor:
    return hint_loss(student, teacher, params.loss, mask)
