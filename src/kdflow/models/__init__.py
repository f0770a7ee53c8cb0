"""Model registry and the on-disk model format: `model.json` (spec) + `model.pt` (state_dict only).

A model is rebuilt from its spec and its weights are loaded with `weights_only=True`; nothing
is unpickled. Normalization lives inside the module (buffers), so every consumer — evaluation,
ONNX export, the server — feeds raw inputs.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdflow.errors import KdflowError
from kdflow.io import read_json, write_json
from kdflow.models.archs import BUILTIN

WEIGHTS = "model.pt"
SPEC = "model.json"


class Classifier(nn.Module):
    """Any registry network behind per-channel input normalization."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float], input_shape: list[int]):
        super().__init__()
        self.net = net
        view = [-1] + [1] * (len(input_shape) - 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(view))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(view))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _import_class(name: str) -> type:
    parts = name.split(":")
    module, cls = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
    if not module or not cls:
        raise KdflowError(f"model name '{name}' must look like import:<module>:<Class>")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise KdflowError(f"model '{name}': cannot import {module}.{cls}: {exc}") from None


def _torchvision(name: str, kwargs: dict, num_classes: int) -> nn.Module:
    try:
        from torchvision import models as tvm
    except Exception as exc:  # torchvision missing or built for another torch
        raise KdflowError(f"model 'torchvision:{name}' needs a working torchvision ({exc})") from None
    try:
        return tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except ValueError as exc:
        raise KdflowError(f"model 'torchvision:{name}': {exc}") from None


def build_net(name: str, kwargs: dict[str, Any], input_shape: list[int], num_classes: int) -> nn.Module:
    try:
        if name in BUILTIN:
            return BUILTIN[name](input_shape, num_classes, **kwargs)
        if name.startswith("torchvision:"):
            return _torchvision(name.split(":", 1)[1], kwargs, num_classes)
        if name.startswith("import:"):
            cls = _import_class(name)
            params = inspect.signature(cls).parameters
            extra = {k: v for k, v in (("input_shape", input_shape), ("num_classes", num_classes)) if k in params}
            return cls(**extra, **kwargs)
    except TypeError as exc:
        raise KdflowError(f"model '{name}': bad kwargs {kwargs}: {exc}") from None
    allowed = ", ".join([*BUILTIN, "torchvision:<name>", "import:<module>:<Class>"])
    raise KdflowError(f"unknown model '{name}'; allowed: {allowed}")


def build_model(spec: dict[str, Any]) -> Classifier:
    """Build from a spec dict: name, kwargs, input_shape, num_classes, mean, std."""
    net = build_net(spec["name"], spec.get("kwargs", {}), list(spec["input_shape"]), int(spec["num_classes"]))
    return Classifier(net, spec["mean"], spec["std"], list(spec["input_shape"]))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model: Classifier, out: Path, spec: dict[str, Any], **meta: Any) -> dict:
    """Write `model.pt` (state_dict) and `model.json` into an (already temp) directory."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out / WEIGHTS)
    doc = {**spec, "params": count_params(model), "size_bytes": os.path.getsize(out / WEIGHTS), **meta}
    write_json(out / SPEC, doc)
    return doc


def load_model(path: str | Path) -> tuple[Classifier, dict]:
    path = Path(path)
    spec = read_json(path / SPEC, "model spec")
    weights = path / WEIGHTS
    if not weights.is_file():
        raise KdflowError(f"model weights not found: {weights}")
    model = build_model(spec)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise KdflowError(f"corrupt or incompatible checkpoint {weights}: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model, spec


def input_numel(spec: dict) -> int:
    return math.prod(spec["input_shape"])
