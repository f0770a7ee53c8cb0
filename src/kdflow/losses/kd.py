"""Hinton et al. (2015) knowledge distillation loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdflow.losses.registry import register_loss


def kd_term(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample T²·KL(p_teacher^T ‖ p_student^T); T² keeps gradient scale independent of T."""
    t = temperature
    log_p_s = F.log_softmax(student.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher.float() / t, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1) * t * t


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float,
            alpha: float) -> torch.Tensor:
    """(1-α)·CE(y) + α·T²·KL, averaged over the batch (`batchmean`): the sum of `kd_terms`."""
    return sum(kd_terms(student, teacher, y, temperature, alpha).values())


@register_loss("kd")
def kd(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float, alpha: float,
       params=None) -> dict[str, torch.Tensor]:
    """Hinton et al. 2015: `ce` = (1-α)·CE(y), `kd` = α·T²·KL(p_t^T ‖ p_s^T)."""
    return kd_terms(student, teacher, y, temperature, alpha)


def kd_terms(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float,
             alpha: float) -> dict[str, torch.Tensor]:
    """{"ce": (1-α)·CE(y), "kd": α·T²·KL}, each averaged over the batch (`batchmean`).

    Samples with y < 0 (the unlabeled transfer set) take the KD term alone: their CE is zero.
    Batch-wide sums rather than per-sample vectors: on a small CPU model every elementwise op of the
    loss (and of its backward) is a measurable share of the step.
    """
    s = student.float()
    # unlabeled → cross_entropy's ignore_index: no per-sample mask, and no host sync to test for them
    ce = F.cross_entropy(s, torch.where(y >= 0, y, -100), reduction="sum", ignore_index=-100)
    n = len(y)
    if alpha == 0:
        return {"ce": ce / n}
    t = temperature
    log_p_s = F.log_softmax(s / t, dim=1)
    with torch.no_grad():  # the teacher side needs no graph
        log_p_t = F.log_softmax(teacher.float() / t, dim=1)
        p_t = log_p_t.exp()
    # Σ p_t·(log p_t − log p_s) = Σ p_t·log p_t (a constant) − Σ p_t·log p_s: only the second has a gradient
    kd = ((p_t * log_p_t).sum() - (p_t * log_p_s).sum()) * (t * t)
    return {"ce": ce * ((1 - alpha) / n), "kd": kd * (alpha / n)}
