"""Decoupled knowledge distillation (Zhao et al., CVPR 2022).

The classic KD term splits into a target-class part (TCKD: KL between the binary
[p_target, 1 - p_target] of teacher and student) and a non-target part (NCKD: KL between the
distributions over the other classes, renormalized). KD = TCKD + (1 - p_target^teacher)·NCKD;
DKD frees the two weights. Both come from the same (cached) teacher logits.

kdflow keeps its α convention: loss = (1-α)·CE + α·(tckd·TCKD + nckd·NCKD). The paper's recipe
(CE + 1·TCKD + 8·NCKD) is α = 0.5 with the default weights, up to a factor 2 on the whole loss.
Transfer samples (no label) take the teacher's top class as the target of the split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdflow.losses.registry import register_loss
from kdflow.names.losses import DKDParams

_MASK = -1e4  # a finite "minus infinity" in log space: exp() underflows to exactly 0, 0·finite stays 0


def _binary(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log [p_target, 1 - p_target] from log-probabilities, computed without 1 - p (no cancellation)."""
    target = (logp * mask).sum(1)
    rest = torch.logsumexp(logp.masked_fill(mask, float("-inf")), 1)
    return torch.stack([target, rest], 1)


def dkd_terms(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (TCKD, NCKD), each scaled by T² like the KD term."""
    t = temperature
    log_ps = F.log_softmax(student.float() / t, dim=1)
    log_pt = F.log_softmax(teacher.float() / t, dim=1)
    mask = F.one_hot(target, student.shape[1]).bool()
    bs, bt = _binary(log_ps, mask), _binary(log_pt, mask)
    tckd = (bt.exp() * (bt - bs)).sum(1)
    ns = F.log_softmax(log_ps.masked_fill(mask, _MASK), dim=1)
    nt = F.log_softmax(log_pt.masked_fill(mask, _MASK), dim=1)
    nckd = (nt.exp() * (nt - ns)).sum(1)
    return tckd * t * t, nckd * t * t


@register_loss("dkd")
def dkd(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float, alpha: float,
        params: DKDParams) -> dict[str, torch.Tensor]:
    """{"ce": (1-α)·CE, "tckd": α·tckd·TCKD, "nckd": α·nckd·NCKD}, each averaged over the batch."""
    labeled = y >= 0
    target = torch.where(labeled, y, teacher.argmax(1))
    n = len(y)
    terms = {"ce": (F.cross_entropy(student.float(), y.clamp(min=0), reduction="none") * labeled).sum()
             * ((1 - alpha) / n)}
    if alpha > 0:
        tckd, nckd = dkd_terms(student, teacher, target, temperature)
        terms["tckd"] = tckd.sum() * (alpha * params.tckd / n)
        terms["nckd"] = nckd.sum() * (alpha * params.nckd / n)
    return terms


def dkd_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, temperature: float, alpha: float,
             tckd_weight: float, nckd_weight: float) -> torch.Tensor:
    """The total of `dkd`'s terms."""
    return sum(dkd(student, teacher, y, temperature, alpha, DKDParams(tckd=tckd_weight, nckd=nckd_weight)).values())
