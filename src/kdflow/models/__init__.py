"""Model registry and the on-disk model format: `model.json` (spec) + `model.pt` (state_dict only).

A spec with a `program` key names an exported program (`.pt2`/`.onnx`) beside it instead
(`kdflow.models.programs`); existing models come in through `kdflow.models.sources`.

A model is rebuilt from its spec and its weights are loaded with `weights_only=True`; nothing
is unpickled. Normalization lives inside the module (buffers), so every consumer — evaluation,
ONNX export, the server — feeds raw inputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdflow.errors import KdflowError
from kdflow.io import read_json, write_json
from kdflow.models import prefixed_archs, programs, text_embed, text_nets  # noqa: F401  (register their archs)
from kdflow.models.archs import ARCHS, build_arch
from kdflow.models.programs import load_program
from kdflow.models.text_nets import TextClassifier

__all__ = ["ARCHS", "SPEC", "WEIGHTS", "Classifier", "build_model", "build_net", "count_params", "load_model",
           "save_model"]

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


def build_net(name: str, kwargs: dict[str, Any], input_shape: list[int], num_classes: int) -> nn.Module:
    try:
        return build_arch(name, kwargs, input_shape, num_classes)
    except TypeError as exc:
        raise KdflowError(f"model '{name}': bad kwargs {kwargs}: {exc}") from None


def build_model(spec: dict[str, Any]) -> Classifier:
    """Build from a spec dict: name, kwargs, input_shape, num_classes, mean, std (text: the `text` entry)."""
    if spec.get("modality") == "text":
        kwargs = {**spec["text"], **spec.get("kwargs", {})}
        return TextClassifier(build_net(spec["name"], kwargs, list(spec["input_shape"]), int(spec["num_classes"])))
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
    model = build_model(spec) if not spec.get("program") else _program_model(path, spec)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise KdflowError(f"corrupt or incompatible checkpoint {weights}: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model, spec


def _program_model(path: Path, spec: dict) -> Classifier:
    """An exported/ONNX teacher: the program file beside model.json is the network; model.pt holds only
    kdflow's normalization buffers."""
    net = load_program(path / spec["program"])
    return Classifier(net, spec["mean"], spec["std"], list(spec["input_shape"]))

