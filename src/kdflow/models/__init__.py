"""Model registry and the on-disk model format: `model.json` (spec) + `model.pt` (state_dict only).

A spec with a `program` key names an exported program (`.pt2`/`.onnx`) beside it instead
(`kdflow.models.programs`); existing models come in through `kdflow.models.sources`.

A model is rebuilt from its spec and its weights are loaded with `weights_only=True`; nothing
is unpickled. Normalization lives inside the module (buffers), so every consumer — evaluation,
ONNX export, the server — feeds raw inputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SpecSize:
    params: int        # distinct parameters
    param_bytes: int   # their storage
    state_bytes: int   # parameters + buffers: what the state_dict must hold
    modules: int


class _Budget(Exception):
    pass


def _list_items(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_list_items(v) for v in value.values())
    if isinstance(value, list | tuple):
        return len(value) + sum(_list_items(v) for v in value)
    return 0


def spec_size(spec: dict[str, Any], max_modules: int = 20_000, max_params: int | None = None,
              max_list_items: int = 10_000) -> SpecSize:
    """What building `spec` would allocate, measured by building it on the `meta` device (shapes, no storage):
    the same builders as `build_model`, so a Hugging Face config counts like a built-in MLP.

    Building is bounded too: kwargs with more than `max_list_items` list entries (e.g. 100,000 hidden layers)
    are refused before building, and registration hooks stop a build that creates more than `max_modules`
    modules or parameter tensors, or (when given) `max_params` parameters; KdflowError then."""
    import threading

    from torch.nn.modules import module as torch_module

    what = f"model '{str(spec.get('name'))[:100]}'"
    items = _list_items(spec.get("kwargs", {})) + _list_items(spec.get("text", {}))
    if items > max_list_items:
        raise KdflowError(f"{what}: its kwargs hold {items:,} list entries, more than {max_list_items:,}")
    me = threading.get_ident()
    seen = {"modules": 0, "tensors": 0, "params": 0}

    def on_module(parent, name, sub):
        if threading.get_ident() == me:
            seen["modules"] += 1
            if seen["modules"] > max_modules:
                raise _Budget(f"more than {max_modules:,} modules")

    def on_param(parent, name, param):
        if threading.get_ident() == me and param is not None:
            seen["tensors"] += 1
            seen["params"] += param.numel()
            if seen["tensors"] > max_modules:
                raise _Budget(f"more than {max_modules:,} parameter tensors")
            if max_params is not None and seen["params"] > max_params:
                raise _Budget(f"more than {max_params:,} parameters")

    hooks = [torch_module.register_module_module_registration_hook(on_module),
             torch_module.register_module_parameter_registration_hook(on_param)]
    try:
        with torch.device("meta"):
            model = build_model(spec)
    except _Budget as exc:
        raise KdflowError(f"{what}: building it would create {exc}") from None
    finally:
        for h in hooks:
            h.remove()
    params = {id(p): p for p in model.parameters()}.values()
    buffers = [b for _, b in model.named_buffers()]
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    return SpecSize(sum(p.numel() for p in params), param_bytes,
                    param_bytes + sum(b.numel() * b.element_size() for b in buffers),
                    sum(1 for _ in model.modules()))


def program_file(path: Path, spec: dict[str, Any]) -> Path:
    """The exported program a spec names, which must be a file inside the model directory (`model.pt2`,
    `net/model.onnx`): an absolute path or `..` would let a registry entry serve any file of the host."""
    name = spec.get("program")
    if not isinstance(name, str) or not name.strip():
        raise KdflowError(f"model spec 'program' must be a file name inside the model directory, got {name!r}"[:300])
    rel = Path(name)
    root = Path(path).resolve()
    target = (root / rel).resolve()
    if rel.is_absolute() or ".." in rel.parts or root not in target.parents:
        raise KdflowError(f"model spec 'program' {name[:200]!r} is outside the model directory; only paths "
                          "relative to it are allowed")
    return target


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
    net = load_program(program_file(path, spec))
    return Classifier(net, spec["mean"], spec["std"], list(spec["input_shape"]))

