"""Model sources: an existing model (a teacher to import, a student's starting weights) named by a URI.

One registry, scheme → loader. A loader turns `(ref, source options, dataset info)` into a
`Loaded` network plus what it knows about itself (input size, normalization, class names, the
sha256 of the files it read). `kdflow.models.imported` then checks it against the data and
writes an ordinary kdflow model directory, so every downstream stage loads it with
`kdflow.models.load_model`. Adding a source is one function with `@register_source` and its scheme in
the torch-free `kdflow.names.model_sources` table (which params.yaml is checked against):

    SourceName("mysrc", "what it reads", detect=lambda path: ...),  # kdflow/names/model_sources.py

    @register_source("mysrc")
    def _mine(ref: str, src, info: dict) -> Loaded:
        ...

URIs: `models:/<name>@<alias>`, `runs:/<id>/<path>` (MLflow, a kdflow-registered model),
`import:<module>:<Class>`, `timm:<name>`, `torchvision:<name>` (each + `weights`),
`hf:<dir>`, `kdflow:<dir>`, `pt2:<file>`, `onnx:<file>`. A bare path is recognised by what it is:
a directory with `model.json` (kdflow) or `config.json` (Hugging Face), a `.pt2` or `.onnx` file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from kdflow.errors import KdflowError
from kdflow.io import sha256_file
from kdflow.names.model_sources import MODEL_SOURCES, Detect, SourceOptions, check_options, is_program

__all__ = ["SOURCES", "Loaded", "SourceOptions", "SourceType", "check_options", "is_program", "open_source", "parse",
           "register_source"]


@dataclass
class Loaded:
    net: nn.Module                     # raw inputs (after kdflow's normalization) → logits
    name: str = ""                     # model name `build_net` rebuilds it from (empty for programs)
    kwargs: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # file name → sha256 (lineage)
    input_shape: list[int | None] | None = None  # from the model's own config; None dims are free
    mean: list[float] | None = None    # normalization from the model's own config (inputs in [0, 1])
    std: list[float] | None = None
    classes: list[str] | None = None   # class names in output order, when the model knows them
    program: Path | None = None        # an exported program file (no Python modules)
    params: int | None = None          # parameter count when the net cannot count its own
    embedding: bool = False            # a sentence encoder: (batch, dim) vectors, not logits (task: embedding)


Loader = Callable[[str, SourceOptions, dict], Loaded]


@dataclass(frozen=True)
class SourceType:
    scheme: str
    load: Loader
    help: str
    program: bool = False  # no Python modules: offline soft targets only, cannot be trained
    detect: Detect | None = None  # recognises a bare path as this source (later registrations are asked first)


SOURCES: dict[str, SourceType] = {}


def register_source(scheme: str) -> Callable[[Loader], Loader]:
    """The loader of a scheme declared in `kdflow.names.model_sources` (help, program, detect come from there)."""
    if scheme not in MODEL_SOURCES:
        raise ValueError(f"model source '{scheme}' is not declared in kdflow/names/model_sources.py")
    name = MODEL_SOURCES[scheme]

    def deco(fn: Loader) -> Loader:
        SOURCES[scheme] = SourceType(scheme, fn, name.help, name.program, name.detect)
        return fn
    return deco


def parse(uri: str) -> tuple[SourceType, str]:
    """(source type, reference) for a URI or a bare path; one clear error for anything else."""
    scheme, sep, ref = uri.partition(":")
    if sep and scheme in SOURCES:
        return SOURCES[scheme], (uri if scheme in ("models", "runs") else ref)
    path = Path(uri)
    for kind in reversed(SOURCES.values()):
        if kind.detect is not None and kind.detect(path):
            return kind, uri
    if not path.exists():
        raise KdflowError(f"model source '{uri}': no such file or directory, and not a known scheme "
                          f"({', '.join(f'{s}:' for s in SOURCES)})")
    raise KdflowError(f"model source '{uri}': unsupported format; use " + "; ".join(
        f"{s}: {t.help}" for s, t in SOURCES.items()))


def open_source(src: SourceOptions, info: dict) -> tuple[SourceType, Loaded]:
    kind, ref = parse(src.uri)
    return kind, kind.load(ref, src, info)


def digest(*paths: Path) -> dict[str, str]:
    return {Path(p).name: sha256_file(p) for p in paths if Path(p).is_file()}


def _weights_file(src: SourceOptions, what: str) -> Path:
    if not src.weights:
        raise KdflowError(f"model source '{src.uri}' needs `weights`: a state_dict file (.pt, loaded with "
                          f"weights_only=True, or .safetensors) for the {what} network")
    return Path(src.weights)


def _with_weights(name: str, src: SourceOptions, info: dict) -> tuple[nn.Module, dict[str, str]]:
    """Build a prefixed network (`import:`, `timm:`, `torchvision:`) for the data's classes and load `weights`."""
    from kdflow.models import build_net
    from kdflow.models.weights import load_weights, read_state_dict

    path = _weights_file(src, name)
    net = build_net(name, dict(src.kwargs), list(info["input_shape"]), int(info["num_classes"]))
    load_weights(net, read_state_dict(path), f"model source '{src.uri}' ({path})", src.strict)
    return net, digest(path)


@register_source("kdflow")
def _kdflow_dir(ref: str, src: SourceOptions, info: dict) -> Loaded:
    from kdflow.models import SPEC, WEIGHTS, load_model

    path = Path(ref)
    if not (path / SPEC).is_file():
        raise KdflowError(f"model source '{src.uri}': {path} is not a kdflow model directory (no {SPEC})")
    model, spec = load_model(path)
    program = path / spec["program"] if spec.get("program") else None
    return Loaded(model.net, name=spec.get("name", ""), kwargs=spec.get("kwargs", {}),
                  digests=digest(path / SPEC, path / WEIGHTS, *([program] if program else [])),
                  input_shape=list(spec["input_shape"]), mean=spec["mean"], std=spec["std"],
                  classes=spec.get("classes"), program=program, params=spec.get("params"),
                  embedding=spec.get("task") == "embedding")


def _mlflow(ref: str, src: SourceOptions, info: dict) -> Loaded:
    from kdflow import tracking

    with tempfile.TemporaryDirectory(prefix="kdflow-source-") as tmp:
        loaded = _kdflow_dir(str(tracking.download_model(ref, Path(tmp))), src, info)
        if loaded.program is not None:
            raise KdflowError(f"model source '{ref}' is an exported program; import it from its file instead")
    return loaded


register_source("models")(_mlflow)
register_source("runs")(_mlflow)


@register_source("import")
def _import(ref: str, src: SourceOptions, info: dict) -> Loaded:
    net, digests = _with_weights(f"import:{ref}", src, info)
    return Loaded(net, name=f"import:{ref}", kwargs=dict(src.kwargs), digests=digests)


@register_source("torchvision")
def _torchvision(ref: str, src: SourceOptions, info: dict) -> Loaded:
    net, digests = _with_weights(f"torchvision:{ref}", src, info)
    return Loaded(net, name=f"torchvision:{ref}", kwargs=dict(src.kwargs), digests=digests)


@register_source("timm")
def _timm(ref: str, src: SourceOptions, info: dict) -> Loaded:
    net, digests = _with_weights(f"timm:{ref}", src, info)
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    fixed = cfg.get("fixed_input_size") and cfg.get("input_size")
    return Loaded(net, name=f"timm:{ref}", kwargs=dict(src.kwargs), digests=digests,
                  input_shape=list(cfg["input_size"]) if fixed else None,
                  mean=list(cfg["mean"]) if cfg.get("mean") else None,
                  std=list(cfg["std"]) if cfg.get("std") else None)


@register_source("hf")
def _hf_image(ref: str, src: SourceOptions, info: dict) -> Loaded:
    from kdflow.models.hf import load_image_classifier

    if info.get("modality") == "text":
        from kdflow.models.hf_text import load_text_classifier

        return load_text_classifier(Path(ref), src, info)

    return load_image_classifier(Path(ref), src)


def _program(ref: str, src: SourceOptions, info: dict) -> Loaded:
    from kdflow.models.programs import load_program

    path = Path(ref)
    net = load_program(path)
    return Loaded(net, digests=digest(path), input_shape=net.input_shape, program=path, params=net.num_params)


register_source("pt2")(_program)
register_source("onnx")(_program)


@register_source("layers")
def _layers(ref: str, src: SourceOptions, info: dict) -> Loaded:
    from kdflow.models.hf_text import layer_subset

    return layer_subset(ref, src, info)


@register_source("encoder")
def _encoder(ref: str, src: SourceOptions, info: dict) -> Loaded:
    from kdflow.models.text_embed import load_encoder

    return load_encoder(Path(ref), src, info)
