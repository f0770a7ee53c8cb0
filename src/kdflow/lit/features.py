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

Text models (spec `text`): paths reach inside the Hugging Face model (`model.bert.encoder.layer.1`).
The probe feeds integer token ids within the vocabulary, one row half padding, at two lengths: the
dimensions that change with the length are token axes, so a loss registered with `token_mask` leaves
padding out. A loss registered with `output=1` reads that element of a module's tuple output
(`attention_probs` taps a self-attention module, which returns `(context, probabilities)`); the model
is then switched to eager attention, the only implementation that materialises the probabilities.
"""

from __future__ import annotations

import difflib
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


def _not_found(role: str, path: str, names: list[str]) -> KdflowError:
    close = difflib.get_close_matches(path, names, n=5, cutoff=0.6)
    # a transformer has hundreds of modules: list the shallow ones, where the layer lists are
    shown = names if len(names) <= 60 else [n for n in names if n.count(".") <= 3][:60] + ["..."]
    hint = f"; closest: {', '.join(close)}" if close else ""
    return KdflowError(f"{role} module '{path}' not found (paths are relative to the model's .net){hint}; "
                       f"available: {', '.join(shown) if shown else '(none)'}")


class FeatureTaps:
    """Forward hooks on the named submodules of `model.net`; `out[name]` holds the last output (a tuple stays
    a tuple: `pick` takes the element a loss reads)."""

    def __init__(self, model: nn.Module, paths: list[str], role: str):
        modules = dict(_net(model).named_modules())
        names = [n for n in modules if n]
        for path in paths:
            if not path or path not in modules:
                raise _not_found(role, path, names)
        self.out: dict[str, torch.Tensor | tuple] = {}
        self.handles = [modules[p].register_forward_hook(self._hook(p)) for p in dict.fromkeys(paths)]

    def _hook(self, name: str):
        def hook(module, args, output):
            self.out[name] = output
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.out.clear()


def pick(output, index: int = 0) -> torch.Tensor | None:
    """Element `index` of a module output (a tensor is its own element 0)."""
    if isinstance(output, tuple | list):
        return output[index] if index < len(output) else None
    return output if index == 0 else None


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


def probe_batches(input_shape: list[int], text: dict | None = None) -> list[torch.Tensor]:
    """Dry-run inputs: a zero batch; for text, token ids within the vocabulary with the second row half
    padding, at two lengths (the axes that follow the length are token axes)."""
    if not text:
        return [torch.zeros(2, *input_shape)]
    pad, vocab = int(text["pad_id"]), int(text["vocab_size"])
    token = next(i for i in range(vocab) if i != pad)
    out = []
    for n in (max(int(input_shape[0]), 4), max(int(input_shape[0]), 4) - 1):
        ids = torch.full((2, n), token, dtype=torch.long)
        ids[1, n // 2:] = pad
        out.append(ids)
    return out


@torch.no_grad()
def probe(model: nn.Module, taps: FeatureTaps, batches: list[torch.Tensor],
          outputs: dict[str, int]) -> dict[str, tuple[list[int], list[int]]]:
    """Per tapped path: the output shape (without the batch dim) and its token axes (axes of that shape)."""
    was_training = model.training
    model.eval()
    seen: list[dict[str, list[int]]] = []
    try:
        for x in batches:
            model(x)
            shapes = {}
            for path, index in outputs.items():
                value = pick(taps.out.get(path), index)
                if not isinstance(value, torch.Tensor):
                    what = "no tensor" if index == 0 else f"no tensor as output element {index}"
                    raise KdflowError(f"module '{path}' gives {what} (got {type(value).__name__}); tap a module "
                                      "whose output is a feature tensor")
                shapes[path] = list(value.shape[1:])
            seen.append(shapes)
            taps.out.clear()
    finally:
        model.train(was_training)
    return {p: (seen[0][p], [i for i, (a, b) in enumerate(zip(seen[0][p], seen[-1][p])) if a != b]
                if len(seen) > 1 else []) for p in outputs}


def eager_attention(model: nn.Module) -> None:
    """Switch the Hugging Face models inside `model` to eager attention (sdpa returns no probabilities)."""
    for m in _net(model).modules():
        if hasattr(m, "set_attn_implementation") and getattr(m, "config", None) is not None:
            m.set_attn_implementation("eager")


def token_mask(mask: torch.Tensor | None, shape: torch.Size, axes: list[int]) -> torch.Tensor | None:
    """The (B, L) padding mask broadcast to a feature of `shape` along its first token axis (None: no mask)."""
    if mask is None or not axes:
        return None
    axis = axes[0] + 1  # axes count without the batch dim
    if shape[axis] != mask.shape[1]:
        return None
    view = [len(mask)] + [1] * (len(shape) - 1)
    view[axis] = mask.shape[1]
    return mask.reshape(view).to(torch.float32)


class FeatureDistiller(nn.Module):
    """The feature terms of a distillation: taps on both models, one adapter per pair, the weighted sum.

    Holds no reference to the models as submodules (they belong to the LightningModule); only the
    adapters are parameters here, and they train with the student.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, pairs: list[FeaturePair], input_shape: list[int],
                 text: dict | None = None):
        super().__init__()
        self.pairs = list(pairs)
        self.kinds = [FEATURE_LOSSES.get_entry(p.method) for p in self.pairs]
        self.args = [kind.bind(p.params) for kind, p in zip(self.kinds, self.pairs)]
        # a term's log name: method and student module, numbered when a method repeats
        self.names = [f"{p.method}_{i}" for i, p in enumerate(self.pairs)]
        self.s_taps = FeatureTaps(student, [p.student for p in self.pairs], "student")
        self.t_taps = FeatureTaps(teacher, [p.teacher for p in self.pairs], "teacher")
        self.index = [int(kind.meta.get("output", 0)) for kind in self.kinds]
        if any(self.index):
            eager_attention(student)
            eager_attention(teacher)
        batches = probe_batches(input_shape, text)
        s_probe = probe(student, self.s_taps, batches, {p.student: i for p, i in zip(self.pairs, self.index)})
        t_probe = probe(teacher, self.t_taps, batches, {p.teacher: i for p, i in zip(self.pairs, self.index)})
        self.shapes = [(s_probe[p.student][0], t_probe[p.teacher][0]) for p in self.pairs]
        # padding is left out only where both sides have their tokens on the same axes
        self.token_axes = [t_probe[p.teacher][1] if s_probe[p.student][1] == t_probe[p.teacher][1] else []
                           for p in self.pairs]
        adapters = []
        for pair, kind, (ss, ts) in zip(self.pairs, self.kinds, self.shapes):
            if kind.meta.get("conv_only") and (len(ss) < 2 or len(ts) < 2):
                raise KdflowError(f"{pair.method} needs conv feature maps (B, C, L) or (B, C, H, W); "
                                  f"'{pair.student}' gives {[None, *ss]}, '{pair.teacher}' gives {[None, *ts]}")
            problem = kind.meta["check"](ss, ts) if "check" in kind.meta else None
            if problem:
                raise KdflowError(f"{pair.method} {problem}; '{pair.student}' gives {[None, *ss]}, "
                                  f"'{pair.teacher}' gives {[None, *ts]}")
            adapters.append(make_adapter(ss, ts) if kind.meta.get("adapter") else nn.Identity())
        self.adapters = nn.ModuleList(adapters)

    def forward(self, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The weighted feature terms of the last student and teacher forwards, by name; clears the captures.

        `mask` (B, L): True on real tokens of a text batch; losses registered with `token_mask` skip padding."""
        s_out, t_out = self.s_taps.out, self.t_taps.out
        missing = [p.student for p in self.pairs if p.student not in s_out] + \
                  [p.teacher for p in self.pairs if p.teacher not in t_out]
        if missing:
            raise KdflowError(f"feature hooks captured nothing for {missing}: the module is not on the forward path")
        terms = {}
        for name, pair, kind, adapter, args, index, axes in zip(self.names, self.pairs, self.kinds, self.adapters,
                                                                self.args, self.index, self.token_axes):
            s, t = adapter(pick(s_out[pair.student], index)), pick(t_out[pair.teacher], index)
            kw = {"mask": token_mask(mask, t.shape, axes)} if kind.meta.get("token_mask") else {}
            terms[name] = pair.weight * kind.fn(s, t, args, **kw)
        s_out.clear()
        t_out.clear()
        return terms

    def remove(self) -> None:
        self.s_taps.remove()
        self.t_taps.remove()
