"""An existing model checked against the data and written as an ordinary kdflow model directory.

Checks, one clear error each: the input shape the model declares (or can take), its class count,
its class names. The written `model.json` records the source (URI, weights path, sha256 of every
file read), so lineage and the report name where the teacher came from; a program source is
copied beside it and `kdflow.models.load_model` wraps it again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from kdflow.errors import KdflowError
from kdflow.models import Classifier, save_model
from kdflow.models.sources import Loaded, SourceOptions, SourceType, open_source


def _check_shape(declared: list | None, shape: list[int], what: str) -> None:
    if declared is None:
        return
    if len(declared) != len(shape) or any(d is not None and d != s for d, s in zip(declared, shape)):
        want = "×".join("?" if d is None else str(d) for d in declared)
        raise KdflowError(f"input shape mismatch: {what} expects inputs of shape {want} (from its own config) but "
                          f"the dataset has {'×'.join(map(str, shape))}; prepare the data at that size "
                          "(data.image_size, data.grayscale) or override source.input_shape")


def _check_output(model: Classifier, shape: list[int], info: dict, what: str,
                  probe: torch.Tensor | None = None) -> None:
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape) if probe is None else probe)
    except KdflowError:
        raise
    except Exception as exc:
        raise KdflowError(f"input shape mismatch: {what} cannot take inputs of shape {'×'.join(map(str, shape))} "
                          f"(the dataset's): {str(exc).splitlines()[0]}") from None
    if out.ndim != 2:
        raise KdflowError(f"{what} must return (batch, classes) logits, got shape {tuple(out.shape)}")
    if out.shape[1] != info["num_classes"]:
        raise KdflowError(f"class count mismatch: {what} outputs {out.shape[1]} classes but the dataset has "
                          f"{info['num_classes']} ({', '.join(map(str, info['classes'][:5]))}…)")


def _check_names(classes: list[str] | None, info: dict, what: str) -> None:
    if not classes or list(map(str, classes)) == list(map(str, info["classes"])):
        return
    diff = [f"#{i}: model '{a}' vs data '{b}'" for i, (a, b) in enumerate(zip(classes, info["classes"]))
            if str(a) != str(b)][:3]
    raise KdflowError(f"class names mismatch: {what} and the dataset name their classes differently ("
                      + "; ".join(diff) + "); set source.classes if only the names differ")


def import_model(src: SourceOptions, info: dict, what: str) -> tuple[Classifier, dict[str, Any], Loaded]:
    """The checked model, its kdflow spec (with `source`) and what the loader found."""
    kind, loaded = open_source(src, info)
    shape = list(info["input_shape"])
    what = f"{what} '{src.uri}'"
    if info.get("modality") == "text":
        return _import_text(src, info, what, kind, loaded)
    _check_shape(getattr(src, "input_shape", None) or loaded.input_shape, shape, what)
    norm = info["normalization"]
    default = ([0.0] * shape[0], [1.0] * shape[0]) if kind.program else (norm["mean"], norm["std"])
    mean = getattr(src, "mean", None) or loaded.mean or default[0]
    std = getattr(src, "std", None) or loaded.std or default[1]
    if len(mean) != shape[0] or len(std) != shape[0]:
        raise KdflowError(f"{what}: normalization has {len(mean)} channels but the dataset's inputs have "
                          f"{shape[0]}; set source.mean/source.std or prepare the data with {len(mean)} channels")
    model = Classifier(loaded.net, mean, std, shape).eval()
    _check_output(model, shape, info, what)
    _check_names(getattr(src, "classes", None) or loaded.classes, info, what)
    spec: dict[str, Any] = {"name": loaded.name or f"program:{kind.scheme}", "kwargs": loaded.kwargs,
                            "input_shape": shape, "num_classes": info["num_classes"], "classes": info["classes"],
                            "mean": list(mean), "std": list(std), "source": source_record(src, kind, loaded)}
    if loaded.program is not None:
        spec["program"] = "model" + loaded.program.suffix
    return model, spec, loaded


def _import_text(src: SourceOptions, info: dict, what: str, kind: SourceType, loaded: Loaded):
    from kdflow.models.text_nets import TextClassifier, text_spec

    if kind.program:
        raise KdflowError(f"{what}: exported programs are not supported on text data yet; import the Hugging Face "
                          "directory")
    model = TextClassifier(loaded.net).eval()
    t = info["tokenizer"]
    ids = [t["cls_id"] if t["cls_id"] is not None else 1, 5, t["sep_id"] if t["sep_id"] is not None else 2]
    task = {}
    if loaded.embedding:  # a sentence encoder: vectors of any width, no classes to check
        from kdflow.models.text_embed import EMBEDDING, embedding_dim

        task = {"task": EMBEDDING, "embedding_dim": embedding_dim(model, info)}
    else:
        _check_output(model, [], info, what, torch.tensor([ids, ids]))
        _check_names(getattr(src, "classes", None) or loaded.classes, info, what)
    spec: dict[str, Any] = {"name": loaded.name, "kwargs": loaded.kwargs, "input_shape": list(info["input_shape"]),
                            "num_classes": info["num_classes"], "classes": info["classes"], "mean": [0.0],
                            "std": [1.0], **text_spec(info), **task, "source": source_record(src, kind, loaded)}
    return model, spec, loaded


def source_record(src: SourceOptions, kind: SourceType, loaded: Loaded) -> dict[str, Any]:
    return {"uri": src.uri, "scheme": kind.scheme, "weights": src.weights, "sha256": loaded.digests,
            "program": kind.program}


def save_imported(model: Classifier, spec: dict, loaded: Loaded, out: Path, **meta: Any) -> dict:
    """Write the model directory into `out` (a temp dir owned by the caller)."""
    if loaded.program is not None:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(loaded.program, out / spec["program"])
        meta = {"params": loaded.params or 0, "size_bytes": os.path.getsize(out / spec["program"]), **meta}
    return save_model(model, out, spec, **meta)
