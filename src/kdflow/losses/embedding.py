"""Embedding distillation (`task: embedding`): the student's sentence vectors regress the teacher's.

sentence-transformers' model distillation (`losses.MSELoss`: mean squared error between student and teacher
embeddings, Reimers & Gurevych 2020) and its cosine counterpart. Both losses take either term by a weight,
so `embedding_mse` with `cosine: 1.0` is the sum of the two. Labels, temperature and alpha do not apply:
every sample, labeled or transfer, contributes alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdflow.losses.registry import register_loss
from kdflow.names.losses import CosineFirst, MseFirst


def embedding_terms(student: torch.Tensor, teacher: torch.Tensor, mse: float, cosine: float) -> dict[str, torch.Tensor]:
    s, t = student.float(), teacher.float().detach()
    terms = {}
    if mse:
        terms["mse"] = mse * F.mse_loss(s, t)
    if cosine:
        terms["cosine"] = cosine * (1 - F.cosine_similarity(s, t, dim=1)).mean()
    return terms


@register_loss("embedding_mse")
def embedding_mse(student, teacher, y, temperature, alpha, params: MseFirst) -> dict[str, torch.Tensor]:
    """MSE to the teacher's embeddings (sentence-transformers' MSELoss), + an optional cosine term."""
    return embedding_terms(student, teacher, params.mse, params.cosine)


@register_loss("embedding_cosine")
def embedding_cosine(student, teacher, y, temperature, alpha, params: CosineFirst) -> dict[str, torch.Tensor]:
    """1 - cos(student, teacher) per sentence, + an optional MSE term."""
    return embedding_terms(student, teacher, params.mse, params.cosine)
