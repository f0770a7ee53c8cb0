"""Where served models come from and what a loaded version carries.

A source is a model directory, a pinned registry version (`models:/<name>/<version>`) or an alias
(`models:/<name>@<alias>`, re-resolved by the swapper). Loading yields an immutable `Served`:
the student, its teacher (from the version's lineage tag or `--teacher`), the reference values
recorded at evaluation, and its label set. Requests hold on to the `Served` they started with, so
a swap never changes a model under a running forward pass.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdflow.errors import KdflowError
from kdflow.io import read_json, sha256_file
from kdflow.models import load_model

log = logging.getLogger("kdflow.serving")

_REGISTRY = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class Source:
    kind: str                 # "dir" | "version" | "alias"
    location: str             # directory path or registered model name
    ref: str | None = None    # version or alias

    @property
    def watched(self) -> bool:
        return self.kind == "alias"


def parse_source(text: str) -> Source:
    if text.startswith("models:/"):
        m = _REGISTRY.match(text)
        if not m:
            raise KdflowError(f"model source '{text}' must look like models:/<name>@<alias> "
                              "or models:/<name>/<version>")
        if m["alias"]:
            return Source("alias", m["name"], m["alias"])
        return Source("version", m["name"], m["version"])
    path = Path(text)
    if not (path / "model.json").is_file():
        raise KdflowError(f"model directory {path} has no model.json (expected a kdflow model or models:/... uri)")
    return Source("dir", str(path))


@dataclass(frozen=True)
class Reference:
    """Values measured at evaluation, exported as gauges so alert rules compare live to expected."""

    teacher_agreement: float | None = None
    confidence_mean: float | None = None
    class_share: dict[str, float] = field(default_factory=dict)


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _class_key(key: str, classes: list[str]) -> str | None:
    if key in classes:
        return key
    if key.isdigit() and int(key) < len(classes):
        return classes[int(key)]
    return None


def reference_from(values: dict[str, Any], classes: list[str]) -> Reference:
    """From version tags (`kdflow.ref.teacher_agreement`, `kdflow.ref.class_share.<k>`, ...) or from a
    model.json `reference` mapping with the same keys (class_share nested or flattened)."""
    flat: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    shares = {}
    for k, v in flat.items():
        if k.startswith("class_share.") and (name := _class_key(k.split(".", 1)[1], classes)) is not None:
            if (share := _float(v)) is not None:
                shares[name] = share
    return Reference(_float(flat.get("teacher_agreement")), _float(flat.get("confidence_mean")), shares)


def classes_of(spec: dict) -> list[str]:
    names = spec.get("classes")
    n = int(spec["num_classes"])
    if isinstance(names, list) and len(names) == n:
        return [str(c) for c in names]
    return [str(i) for i in range(n)]


@dataclass(frozen=True, eq=False)
class Served:
    """One loaded model version. Immutable; compared by identity."""

    model: nn.Module
    spec: dict
    name: str
    version: str
    classes: list[str]
    input_shape: tuple[int, ...]
    teacher: nn.Module | None = None
    teacher_uri: str | None = None
    reference: Reference = Reference()

    @property
    def arch(self) -> str:
        return str(self.spec.get("name", "unknown"))


def compile_for_serving(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """TorchScript trace + freeze: at the batch sizes a server sees, the eager module's Python overhead
    costs more than the small student's arithmetic. A trace that does not reproduce the eager outputs
    (data-dependent control flow) is discarded and the eager module serves."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.freeze(torch.jit.trace(model, torch.randn(2, *input_shape)))
            for b in (1, 5):
                x = torch.randn(b, *input_shape)
                if not torch.allclose(traced(x), model(x), rtol=1e-3, atol=1e-4):
                    raise ValueError("traced outputs differ from eager ones")
    except Exception as exc:
        log.warning("serving the eager module (TorchScript trace unusable: %s)", str(exc).splitlines()[0][:200])
        return model
    return traced


def _warm(model: nn.Module, input_shape: tuple[int, ...], rows: int) -> None:
    # The first calls of a fresh module pay one-off allocation costs; pay them before serving.
    with torch.inference_mode():
        for b in {1, rows}:
            model(torch.zeros((b, *input_shape)))


def _compatible(teacher_spec: dict, spec: dict) -> bool:
    return (list(teacher_spec["input_shape"]) == list(spec["input_shape"])
            and int(teacher_spec["num_classes"]) == int(spec["num_classes"]))


class Loader:
    """Loads `Served` versions; keeps the last two teachers so a swap between students of one teacher
    does not reload it."""

    def __init__(self, source: Source, teacher_dir: str | None = None, warm_rows: int = 1, jit: bool = True):
        self.source = source
        self.teacher_dir = teacher_dir
        self.warm_rows = warm_rows
        self.jit = jit
        self._teachers: OrderedDict[str, tuple[nn.Module, dict]] = OrderedDict()

    def resolve(self) -> str:
        """The version the source points at now."""
        from kdflow import tracking

        if self.source.kind == "dir":
            return self._dir_version()
        if self.source.kind == "version":
            return str(self.source.ref)
        version = tracking.resolve_alias(self.source.location, str(self.source.ref))
        if version is None:
            raise KdflowError(f"alias {self.source.location}@{self.source.ref} is not set")
        return version

    def _dir_version(self) -> str:
        spec_version = _spec_version(Path(self.source.location))
        return spec_version or "local-" + sha256_file(Path(self.source.location) / "model.pt")[:8]

    def load(self, version: str) -> Served:
        if self.source.kind == "dir":
            model, spec = load_model(self.source.location)
            return self._finish(model, spec, Path(self.source.location).name, version,
                                spec.get("reference") or {}, self.teacher_dir, self.teacher_dir)
        from kdflow import tracking

        name = self.source.location
        tmp = Path(tempfile.mkdtemp(prefix="kdflow-serve-"))
        try:
            model, spec = load_model(tracking.download_model(f"models:/{name}/{version}", tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # weights are in memory now
        tags = tracking.client().get_model_version(name, version).tags
        refs = {k[len(tracking.REF_PREFIX):]: v for k, v in tags.items() if k.startswith(tracking.REF_PREFIX)}
        uri = tags.get(tracking.TEACHER_TAG)
        return self._finish(model, spec, name, version, refs or spec.get("reference") or {}, uri, uri)

    def _finish(self, model, spec, name, version, refs, teacher_src, teacher_uri) -> Served:
        shape = tuple(int(d) for d in spec["input_shape"])
        classes = classes_of(spec)
        teacher = self._teacher(teacher_src, spec) if teacher_src else None
        if self.jit:
            model = compile_for_serving(model, shape)
        _warm(model, shape, self.warm_rows)
        return Served(model, spec, name, str(version), classes, shape, teacher,
                      teacher_uri if teacher is not None else None, reference_from(refs, classes))

    def _teacher(self, src: str, spec: dict) -> nn.Module | None:
        from kdflow import tracking

        if src not in self._teachers:
            try:
                if Path(src).is_dir():
                    model, tspec = load_model(src)
                else:
                    tmp = Path(tempfile.mkdtemp(prefix="kdflow-teacher-"))
                    try:
                        model, tspec = load_model(tracking.download_model(src, tmp))
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
            except KdflowError as exc:
                log.error("shadow teacher %s unavailable, shadow check off for this version: %s", src, exc)
                return None
            if self.jit:
                model = compile_for_serving(model, tuple(tspec["input_shape"]))
            _warm(model, tuple(tspec["input_shape"]), 1)
            self._teachers[src] = (model, tspec)
            while len(self._teachers) > 2:
                self._teachers.popitem(last=False)
        self._teachers.move_to_end(src)
        model, tspec = self._teachers[src]
        if not _compatible(tspec, spec):
            log.error("teacher %s has input %s / %s classes, the student %s / %s: shadow check off",
                      src, tspec["input_shape"], tspec["num_classes"], spec["input_shape"], spec["num_classes"])
            return None
        return model


def _spec_version(path: Path) -> str | None:
    version = read_json(path / "model.json", "model spec").get("version")
    return str(version) if version is not None else None
