"""The architecture registry, and the built-in architectures.

`ARCHS` is the one table of model names a spec may hold: `@register_arch("mlp")` adds a builder taking
`input_shape` (C, L) or (C, H, W) (or (F,)), `num_classes` and the spec's kwargs; `@register_arch("timm",
prefixed=True)` makes `timm:<ref>` names, built by `fn(ref, kwargs, input_shape, num_classes)`. `trusted`
says the builder makes the network from the spec's name, kwargs and config alone, importing no code the
spec names: the model server (`kdflow.serving.trust`) loads only those (and allow-listed `import:` modules).
`kdflow.models` imports every module that registers one (archs, prefixed_archs, text_nets, text_embed,
programs), so the table is complete wherever a model is built or checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kdflow.errors import KdflowError


@dataclass(frozen=True)
class Arch:
    name: str
    build: Callable[..., nn.Module]
    trusted: bool = True  # built from name/kwargs/config only: no code named by the spec is imported
    prefixed: bool = False  # `name:<ref>` names; build(ref, kwargs, input_shape, num_classes)


ARCHS: dict[str, Arch] = {}


def register_arch(name: str, trusted: bool = True, prefixed: bool = False) -> Callable:
    def deco(fn):
        if name in ARCHS:
            raise ValueError(f"architecture '{name}' is registered twice")
        ARCHS[name] = Arch(name, fn, trusted, prefixed)
        return fn
    return deco


def find_arch(name: str) -> tuple[Arch | None, str]:
    """(the registry entry of a model name, the reference after a prefix) or (None, "")."""
    arch = ARCHS.get(name)
    if arch is not None and not arch.prefixed:
        return arch, ""
    prefix, sep, ref = name.partition(":")
    arch = ARCHS.get(prefix)
    return (arch, ref) if sep and arch is not None and arch.prefixed else (None, "")


def arch_names() -> list[str]:
    return [f"{a.name}:<name>" if a.prefixed else a.name for a in ARCHS.values()]


def build_arch(name: str, kwargs: dict[str, Any], input_shape: list[int], num_classes: int) -> nn.Module:
    arch, ref = find_arch(name)
    if arch is None:
        raise KdflowError(f"unknown model '{name}'; allowed: {', '.join(arch_names())}")
    if arch.prefixed:
        return arch.build(ref, kwargs, input_shape, num_classes)
    return arch.build(input_shape, num_classes, **kwargs)


def _flat_dim(body: nn.Module, input_shape: Sequence[int]) -> int:
    with torch.no_grad():
        return int(body(torch.zeros(1, *input_shape)).flatten(1).shape[1])


@register_arch("mlp")
class MLP(nn.Module):
    def __init__(self, input_shape, num_classes, hidden=(256, 256), dropout=0.0, input_dropout=0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout:
            layers.append(nn.Dropout(input_dropout))
        dim = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(dim, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            dim = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class _ConvNet(nn.Module):
    """features → flatten → dropout → linear head (the head sized by a dry run of the features)."""

    def _finish(self, layers: list[nn.Module], input_shape, num_classes: int, dropout: float) -> None:
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(_flat_dim(self.features, input_shape), num_classes)

    def forward(self, x):
        return self.head(self.dropout(self.features(x).flatten(1)))


@register_arch("cnn1d")
class CNN1d(_ConvNet):
    """Strided 1-D CNN. Defaults are the MNIST-1D paper's ConvBase: 5,210 parameters on (1, 40)."""

    def __init__(self, input_shape, num_classes, channels=(25, 25, 25), kernels=(5, 3, 3), stride=2,
                 padding=1, dropout=0.0):
        super().__init__()
        layers: list[nn.Module] = []
        cin = input_shape[0]
        for c, k in zip(channels, kernels, strict=True):
            layers += [nn.Conv1d(cin, c, k, stride=stride, padding=padding), nn.ReLU()]
            cin = c
        self._finish(layers, input_shape, num_classes, dropout)


@register_arch("cnn2d")
class CNN2d(_ConvNet):
    def __init__(self, input_shape, num_classes, channels=(32, 64), kernel=3, pool=True, dropout=0.0,
                 batchnorm=True):
        super().__init__()
        layers: list[nn.Module] = []
        cin = input_shape[0]
        for c in channels:
            layers.append(nn.Conv2d(cin, c, kernel, padding=kernel // 2, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.ReLU())
            if pool:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            cin = c
        self._finish(layers, input_shape, num_classes, dropout)


class _Block(nn.Module):
    def __init__(self, conv, bn, cin, cout, stride):
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(cout)
        self.conv2 = conv(cout, cout, 3, padding=1, bias=False)
        self.bn2 = bn(cout)
        self.short = (nn.Sequential(conv(cin, cout, 1, stride=stride, bias=False), bn(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


@register_arch("resnet")
class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, §4.2) for 1-D signals or images, chosen by input rank."""

    def __init__(self, input_shape, num_classes, width=16, depth=2, stages=3, dropout=0.0):
        super().__init__()
        conv, bn, pool = ((nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d) if len(input_shape) == 2
                          else (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d))
        layers: list[nn.Module] = [conv(input_shape[0], width, 3, padding=1, bias=False), bn(width), nn.ReLU()]
        cin = width
        for s in range(stages):
            cout = width * 2**s
            for b in range(depth):
                layers.append(_Block(conv, bn, cin, cout, 2 if (b == 0 and s > 0) else 1))
                cin = cout
        layers += [pool(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.head(self.dropout(self.features(x)))


@register_arch("transformer")
class PatchTransformer(nn.Module):
    """A small ViT: non-overlapping patches of 1-D signals (C, L) or images (C, H, W), CLS token."""

    def __init__(self, input_shape, num_classes, patch=4, dim=64, depth=2, heads=4, mlp_ratio=2.0, dropout=0.0):
        super().__init__()
        c = input_shape[0]
        if len(input_shape) == 2:
            self.embed = nn.Conv1d(c, dim, patch, stride=patch)
        elif len(input_shape) == 3:
            self.embed = nn.Conv2d(c, dim, patch, stride=patch)
        else:
            raise ValueError("transformer needs (C, L) or (C, H, W) inputs")
        n = _flat_dim(self.embed, input_shape) // dim
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1) + self.pos
        return self.head(self.norm(self.encoder(tokens))[:, 0])

