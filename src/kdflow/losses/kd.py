"""Hinton et al. (2015) knowledge distillation loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_term(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample T²·KL(p_teacher^T ‖ p_student^T); T² keeps gradient scale independent of T."""
    t = temperature
    log_p_s = F.log_softmax(student.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher.float() / t, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1) * t * t


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float,
            alpha: float) -> torch.Tensor:
    """(1-α)·CE(y) + α·T²·KL, averaged over the batch (`batchmean`).

    Samples with y < 0 (the unlabeled transfer set) take the KD term alone: their CE is zero.
    """
    labeled = y >= 0
    ce = F.cross_entropy(student.float(), y.clamp(min=0), reduction="none") * labeled
    kd = kd_term(student, teacher, temperature) if alpha > 0 else torch.zeros_like(ce)
    return ((1 - alpha) * ce + alpha * kd).sum() / len(y)
