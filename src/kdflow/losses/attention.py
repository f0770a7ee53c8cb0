"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017) for conv feature maps.

The attention map of a (B, C, *spatial) activation is the channel-mean of |A|^p, flattened and
L2-normalized per sample; the loss is the mean squared difference of student and teacher maps
(the reference implementation's `(at(x) - at(y)).pow(2).mean()`). Channel counts may differ; a
spatial mismatch is average-pooled to the smaller map. No adapter is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdflow.losses.hint import match_spatial
from kdflow.losses.registry import register_feature_loss
from kdflow.names.losses import AttentionParams


def _pooled(feature: torch.Tensor, p: float) -> torch.Tensor:
    return feature.float().abs().pow(p).mean(1, keepdim=True)


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """(B, C, *spatial) -> (B, prod(spatial)), unit L2 norm per sample."""
    return F.normalize(_pooled(feature, p).flatten(1), dim=1)


def attention_loss(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    s, t = match_spatial(_pooled(student, p), _pooled(teacher, p))
    return (F.normalize(s.flatten(1), dim=1) - F.normalize(t.flatten(1), dim=1)).pow(2).mean()


@register_feature_loss("attention", adapter=False, conv_only=True)
def attention(student: torch.Tensor, teacher: torch.Tensor, params: AttentionParams) -> torch.Tensor:
    return attention_loss(student, teacher, params.p)
