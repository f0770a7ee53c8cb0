"""Attention-distribution transfer between transformers (TinyBERT / MiniLM style) for text.

Tapped on a self-attention module (e.g. `model.bert.encoder.layer.1.attention.self`), whose output is
`(context, probabilities (B, heads, L, L))`. Student and teacher may have different head counts, so
what is matched is the head-averaged attention distribution of every real query token over the keys:
KL(teacher ‖ student) per query row (MiniLM), or the mean squared difference of the probabilities
(TinyBERT matches per-head scores, which needs equal head counts). Padding query rows are left out;
padding keys carry zero probability on both sides already. The sequences must be the same tokens
(one tokenizer), so no adapter is involved.
"""

from __future__ import annotations

import torch

from kdflow.losses.registry import register_feature_loss
from kdflow.names.losses import AttentionProbsParams


def attention_probs_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "kl",
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """student/teacher (B, H, L, L) probabilities; mask broadcastable to (B, 1, L, 1), 1 on real query tokens."""
    s, t = student.float().mean(1), teacher.float().mean(1)  # (B, L, L)
    rows = mask[:, 0] if mask is not None else torch.ones_like(s[..., :1])  # (B, L, 1)
    if kind == "mse":
        return ((s - t).pow(2) * rows).sum() / (rows.sum() * s.shape[-1]).clamp_min(1)
    kl = (torch.xlogy(t, t) - t * s.clamp_min(1e-12).log()).sum(-1, keepdim=True)  # per query row
    return (kl * rows).sum() / rows.sum().clamp_min(1)


def check_shapes(student: list[int], teacher: list[int]) -> str | None:
    """Probe shapes (no batch dim): both (heads, L, L) over the same L, else what is wrong."""
    if len(student) == 3 == len(teacher) and student[1:] == teacher[1:] and student[1] == student[2]:
        return None
    return ("needs attention probabilities (heads, L, L) over the same tokens on both sides: tap a self-attention "
            "module, e.g. model.bert.encoder.layer.0.attention.self")


@register_feature_loss("attention_probs", adapter=False, output=1, token_mask=True,
                       check=check_shapes)
def attention_probs(student: torch.Tensor, teacher: torch.Tensor, params: AttentionProbsParams,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    return attention_probs_loss(student, teacher, params.loss, mask)
