"""Quality metrics of one model on a labeled split (torchmetrics), robustness and OOD detection."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    binary_auroc,
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_confusion_matrix,
    multiclass_f1_score,
)


@torch.inference_mode()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)])


def quality(logits: torch.Tensor, y: torch.Tensor, bins: int) -> dict[str, float]:
    c = logits.shape[1]
    return {
        "accuracy": float(multiclass_accuracy(logits, y, c, average="micro")),
        "macro_f1": float(multiclass_f1_score(logits, y, c, average="macro")),
        "nll": float(F.cross_entropy(logits, y)),
        "ece": float(multiclass_calibration_error(logits, y, c, n_bins=bins, norm="l1")),
    }


def confusion(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return multiclass_confusion_matrix(logits, y, logits.shape[1]).numpy()


def reliability(logits: torch.Tensor, y: torch.Tensor, bins: int) -> list[dict]:
    p = logits.softmax(1)
    conf, pred = p.max(1)
    edges = torch.linspace(0, 1, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            rows.append({"bin": round(float(hi), 4), "confidence": float(conf[m].mean()),
                         "accuracy": float((pred[m] == y[m]).float().mean()), "count": int(m.sum())})
    return rows


def noise_accuracy(model, x: torch.Tensor, y: torch.Tensor, sigma: float, std: torch.Tensor) -> float:
    """Accuracy under Gaussian noise of `sigma` × the per-channel data std (seeded)."""
    g = torch.Generator().manual_seed(0)
    noisy = x + torch.randn(x.shape, generator=g) * sigma * std
    return float((predict(model, noisy).argmax(1) == y).float().mean())


def fgsm_accuracy(model, x: torch.Tensor, y: torch.Tensor, eps: float, std: torch.Tensor,
                  batch_size: int = 1024) -> float:
    """Accuracy under FGSM (Goodfellow et al. 2015) with step `eps` × the per-channel data std."""
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(xb).float(), y[i:i + batch_size])
            (grad,) = torch.autograd.grad(loss, xb)
        adv = (xb + eps * std * grad.sign()).detach()
        correct += int((predict(model, adv).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def ood_inputs(kind: str, n: int, shape: list[int], mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if kind == "uniform":
        return mean + (torch.rand((n, *shape), generator=g) * 2 - 1) * 3 * std
    return mean + torch.randn((n, *shape), generator=g) * std


def ood_auroc(model, x_in: torch.Tensor, x_out: torch.Tensor) -> float:
    """AUROC of max-softmax (Hendrycks & Gimpel 2017) separating in-distribution from OOD inputs."""
    s_in = predict(model, x_in).softmax(1).max(1).values
    s_out = predict(model, x_out).softmax(1).max(1).values
    target = torch.cat([torch.ones(len(s_in)), torch.zeros(len(s_out))]).long()
    return float(binary_auroc(torch.cat([s_in, s_out]), target))
