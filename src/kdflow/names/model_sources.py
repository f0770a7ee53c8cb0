"""Model source schemes (torch-free): what `teacher.source` / `<role>.init_from` URIs may name.

`kdflow.config` checks a source's scheme and options against this table when params.yaml loads; the
loader of each scheme registers under it in `kdflow.models.sources` (`@register_source("timm")`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Detect = Callable[[Path], bool]


class SourceOptions(Protocol):
    """What a loader reads from `teacher.source` / `<role>.init_from` (`kdflow.config.ModelSource`)."""

    uri: str
    weights: str | None
    kwargs: dict[str, Any]
    strict: bool


@dataclass(frozen=True)
class SourceName:
    scheme: str
    help: str
    program: bool = False  # no Python modules: offline soft targets only, cannot be trained
    detect: Detect | None = None  # recognises a bare path as this source (later entries are asked first)
    needs_weights: bool = False  # built by name: the weights come from `weights`


MODEL_SOURCES: dict[str, SourceName] = {s.scheme: s for s in (
    SourceName("kdflow", "a kdflow model directory (model.json + model.pt), e.g. an earlier run's teacher",
               detect=lambda p: (p / "model.json").is_file()),
    SourceName("models", "an MLflow registered model, models:/<name>@<alias> or models:/<name>/<version>"),
    SourceName("runs", "an MLflow run artifact holding a kdflow model, runs:/<run id>/<path>"),
    SourceName("import", "import:<module>:<Class> + kwargs + weights (.pt state_dict or .safetensors)",
               needs_weights=True),
    SourceName("torchvision", "torchvision:<name> + weights (a local file; nothing is downloaded)", needs_weights=True),
    SourceName("timm", "timm:<name> + weights (a local file; input size and normalization from timm's config)",
               needs_weights=True),
    SourceName("hf", "a Hugging Face image (on text data: sequence) classifier dir (config.json + weights)",
               detect=lambda p: (p / "config.json").is_file()),
    SourceName("pt2", "a torch.export program (.pt2): offline soft targets only", program=True,
               detect=lambda p: p.suffix == ".pt2"),
    SourceName("onnx", "an ONNX file run by onnxruntime: offline soft targets only", program=True,
               detect=lambda p: p.suffix == ".onnx"),
    SourceName("layers", "layers:<kdflow or Hugging Face text model dir> + kwargs.layers: keep a subset of its "
               "transformer layers (DistilBERT-style student init)"),
    SourceName("encoder", "encoder:<Hugging Face encoder dir>: a sentence encoder (task: embedding), pooled as its "
               "sentence-transformers config says (mean by default); kwargs pooling, normalize"),
)}


def is_program(uri: str) -> bool:
    """True when `uri` names a teacher without Python modules (program detectors only look at the name)."""
    scheme = uri.partition(":")[0]
    if scheme in MODEL_SOURCES:
        return MODEL_SOURCES[scheme].program
    return any(k.program and k.detect is not None and k.detect(Path(uri)) for k in MODEL_SOURCES.values())


def check_options(src: SourceOptions) -> str | None:
    """What is wrong with a source's options before any file is read (the params schema calls this)."""
    scheme, sep, _ = src.uri.partition(":")
    if sep and len(scheme) > 1 and scheme.isidentifier() and scheme not in MODEL_SOURCES:
        return f"unknown model source scheme '{scheme}:' in '{src.uri}'; known: {', '.join(MODEL_SOURCES)}"
    if scheme in MODEL_SOURCES and MODEL_SOURCES[scheme].needs_weights and not src.weights:
        return f"'{src.uri}' needs weights: a state_dict file (.pt, loaded with weights_only=True, or .safetensors)"
    return None
