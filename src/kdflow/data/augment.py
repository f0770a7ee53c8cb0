"""Batched, seeded augmentation on raw inputs (before the model's normalization layer).

1-D signals (B, C, L): one resampling does the random fractional shift and time stretch, then
amplitude scale, a linear ramp, smooth (low-pass) noise and i.i.d. noise — the ingredients of the
MNIST-1D generator. Images (B, C, H, W): one affine resampling does shift, flip and rotation.
Working on whole batches keeps augmentation off the per-sample Python path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdflow.config import Augment


def _u(n: int, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g).to(device) * 2 - 1  # uniform in [-1, 1)


def augment_1d(x: torch.Tensor, a: Augment, g: torch.Generator) -> torch.Tensor:
    b, _, length = x.shape
    if a.shift or a.stretch:
        t = torch.linspace(-1, 1, length, device=x.device)
        factor = 1 + a.stretch * _u(b, g, x.device)
        shift = a.shift * _u(b, g, x.device) * 2 / max(length - 1, 1)
        pos = t[None] * factor[:, None] - shift[:, None]
        grid = torch.stack([pos, torch.zeros_like(pos)], -1)[:, None]  # (B, 1, L, 2)
        x = F.grid_sample(x[:, :, None], grid, align_corners=True, padding_mode="border")[:, :, 0]
    if a.scale:
        x = x * (1 + a.scale * _u(b, g, x.device))[:, None, None]
    if a.ramp:
        x = x + (a.ramp * _u(b, g, x.device))[:, None, None] * torch.linspace(-1, 1, length, device=x.device)
    if a.smooth_noise:
        knots = max(length // 8, 2)
        coarse = torch.randn(b, x.shape[1], knots, generator=g).to(x.device) * a.smooth_noise
        x = x + F.interpolate(coarse, size=length, mode="linear", align_corners=True)
    if a.noise:
        x = x + torch.randn(x.shape, generator=g).to(x.device) * a.noise
    return x


def augment_2d(x: torch.Tensor, a: Augment, g: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    angle = math.radians(a.rotate) * _u(b, g, x.device)
    sx = torch.ones(b, device=x.device)
    if a.flip:
        sx = torch.where(torch.rand(b, generator=g).to(x.device) < 0.5, -sx, sx)
    tx = a.crop_pad * _u(b, g, x.device) * 2 / w
    ty = a.crop_pad * _u(b, g, x.device) * 2 / h
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * sx, -sin, tx], 1), torch.stack([sin * sx, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def augment(x: torch.Tensor, a: Augment, g: torch.Generator) -> torch.Tensor:
    if not a.enabled:
        return x
    if x.dim() == 3:
        return augment_1d(x, a, g)
    if x.dim() == 4:
        return augment_2d(x, a, g)
    return x + torch.randn(x.shape, generator=g).to(x.device) * a.noise if a.noise else x
