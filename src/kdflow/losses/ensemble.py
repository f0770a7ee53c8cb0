"""Multi-teacher targets: the average of the teachers' probabilities at temperature T.

The combined store keeps each teacher's raw logits, shape (N, K, C). At distillation time they
become one set of "equivalent logits" z = T·log Σ_k w_k softmax(z_k / T), whose softmax at T is
exactly the weighted average of the teachers' tempered probabilities (not of their logits).
Every output loss then works unchanged on (N, C).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdflow.losses.registry import register_combiner


def _weights(k: int, weights: torch.Tensor | None, device) -> torch.Tensor:
    w = torch.full((k,), 1.0 / k) if weights is None else weights.float() / weights.float().sum()
    return w.to(device)


@register_combiner("mean_prob")
def ensemble_logits(teachers: torch.Tensor, temperature: float, weights: torch.Tensor | None = None,
                    params=None) -> torch.Tensor:
    """(B, K, C) per-teacher logits -> (B, C) logits whose softmax(·/T) = Σ_k w_k softmax(z_k/T)."""
    if teachers.dim() == 2:
        return teachers
    k = teachers.shape[1]
    log_w = torch.log(_weights(k, weights, teachers.device)).view(1, k, 1)
    log_p = F.log_softmax(teachers.float() / temperature, dim=2)
    return torch.logsumexp(log_w + log_p, dim=1) * temperature


@register_combiner("mean_logits")
def mean_logits(teachers: torch.Tensor, temperature: float, weights: torch.Tensor | None = None,
                params=None) -> torch.Tensor:
    """The weighted average of the raw logits (Hinton et al.'s ensemble of specialists averages these)."""
    if teachers.dim() == 2:
        return teachers
    w = _weights(teachers.shape[1], weights, teachers.device).view(1, -1, 1)
    return (teachers.float() * w).sum(1)
