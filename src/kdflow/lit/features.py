"""Intermediate-layer distillation: forward hooks capture named modules; adapters bridge shapes.

Models are never edited: a forward hook on each named module (path relative to the classifier's
`.net`) stores its output for the step. Adapters are built from a dry-run shape probe (a zero
batch through both models, in eval mode so BatchNorm statistics are untouched) and trained with
the student:

- same shape -> identity;
- channels differ (dim 1 of (B, C, L) / (B, C, H, W)) -> a 1×1 conv C_s -> C_t; a remaining spatial
  mismatch is average-pooled to the smaller size by the loss (3-D outputs are read as (B, C, L), so
  transformer tokens (B, N, D) with different N are treated the same way);
- only the last dimension differs (e.g. tokens (B, N, D) of another width) -> Linear over it;
- same channels, other spatial size -> identity (the loss pools);
- anything else -> flatten, Linear to the teacher's size, reshape.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kdflow.config import FeaturePair
from kdflow.errors import KdflowError
from kdflow.losses import FEATURE_LOSSES


def _net(model: nn.Module) -> nn.Module:
    return getattr(model, "net", model)


def module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in _net(model).named_modules() if name]


class FeatureTaps:
    """Forward hooks on the named submodules of `model.net`; `out[name]` holds the last output."""

    def __init__(self, model: nn.Module, paths: list[str], role: str):
        modules = dict(_net(model).named_modules())
        for path in paths:
            if not path or path not in modules:
                names = module_names(model)
                raise KdflowError(f"{role} module '{path}' not found (paths are relative to the model's .net); "
                                  f"available: {', '.join(names) if names else '(none)'}")
        self.out: dict[str, torch.Tensor] = {}
        self.handles = [modules[p].register_forward_hook(self._hook(p)) for p in dict.fromkeys(paths)]

    def _hook(self, name: str):
        def hook(module, args, output):
            self.out[name] = output[0] if isinstance(output, tuple | list) else output
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.out.clear()


class FlattenLinear(nn.Module):
    def __init__(self, s_shape: list[int], t_shape: list[int]):
        super().__init__()
        self.t_shape = list(t_shape)
        self.linear = nn.Linear(math.prod(s_shape), math.prod(t_shape))

    def forward(self, x):
        return self.linear(x.flatten(1)).view(len(x), *self.t_shape)


class LastDimLinear(nn.Linear):
    pass  # nn.Linear already maps the last dimension; the name documents the case


def make_adapter(s_shape: list[int], t_shape: list[int]) -> nn.Module:
    """An adapter from student feature shape to teacher feature shape (both without the batch dim)."""
    s, t = list(s_shape), list(t_shape)
    if s == t:
        return nn.Identity()
    if len(s) == len(t) and 2 <= len(s) <= 4:
        if s[0] != t[0]:
            conv = {2: nn.Conv1d, 3: nn.Conv2d, 4: nn.Conv3d}[len(s)]
            return conv(s[0], t[0], kernel_size=1, bias=False)
        if s[:-1] == t[:-1]:
            return LastDimLinear(s[-1], t[-1])
        if s[0] == t[0] and len(s) >= 3:
            return nn.Identity()  # same channels, other spatial size: the loss pools to the smaller map
    return FlattenLinear(s, t)


@torch.no_grad()
def probe(model: nn.Module, taps: FeatureTaps, input_shape: list[int]) -> dict[str, list[int]]:
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(2, *input_shape))
    finally:
        model.train(was_training)
    shapes = {k: list(v.shape[1:]) for k, v in taps.out.items()}
    taps.out.clear()
    return shapes


class FeatureDistiller(nn.Module):
    """The feature terms of a distillation: taps on both models, one adapter per pair, the weighted sum.

    Holds no reference to the models as submodules (they belong to the LightningModule); only the
    adapters are parameters here, and they train with the student.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, pairs: list[FeaturePair], input_shape: list[int]):
        super().__init__()
        self.pairs = list(pairs)
        self.kinds = [FEATURE_LOSSES.get_entry(p.method) for p in self.pairs]
        self.args = [kind.bind(p.params) for kind, p in zip(self.kinds, self.pairs)]
        # a term's log name: method and student module, numbered when a method repeats
        self.names = [f"{p.method}_{i}" for i, p in enumerate(self.pairs)]
        self.s_taps = FeatureTaps(student, [p.student for p in self.pairs], "student")
        self.t_taps = FeatureTaps(teacher, [p.teacher for p in self.pairs], "teacher")
        s_shapes, t_shapes = probe(student, self.s_taps, input_shape), probe(teacher, self.t_taps, input_shape)
        self.shapes = [(s_shapes[p.student], t_shapes[p.teacher]) for p in self.pairs]
        adapters = []
        for pair, kind, (ss, ts) in zip(self.pairs, self.kinds, self.shapes):
            if kind.meta.get("conv_only") and (len(ss) < 2 or len(ts) < 2):
                raise KdflowError(f"{pair.method} needs conv feature maps (B, C, L) or (B, C, H, W); "
                                  f"'{pair.student}' gives {[None, *ss]}, '{pair.teacher}' gives {[None, *ts]}")
            adapters.append(make_adapter(ss, ts) if kind.meta.get("adapter") else nn.Identity())
        self.adapters = nn.ModuleList(adapters)

    def forward(self) -> dict[str, torch.Tensor]:
        """The weighted feature terms of the last student and teacher forwards, by name; clears the captures."""
        s_out, t_out = self.s_taps.out, self.t_taps.out
        missing = [p.student for p in self.pairs if p.student not in s_out] + \
                  [p.teacher for p in self.pairs if p.teacher not in t_out]
        if missing:
            raise KdflowError(f"feature hooks captured nothing for {missing}: the module is not on the forward path")
        terms = {name: pair.weight * kind.fn(adapter(s_out[pair.student]), t_out[pair.teacher], args)
                 for name, pair, kind, adapter, args in zip(self.names, self.pairs, self.kinds, self.adapters,
                                                            self.args)}
        s_out.clear()
        t_out.clear()
        return terms

    def remove(self) -> None:
        self.s_taps.remove()
        self.t_taps.remove()
