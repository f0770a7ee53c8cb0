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
from kdflow.redact import redact
from kdflow.serving.trust import check_uri, load_trusted
from kdflow.tracking import NOT_FOUND, RegistryUnavailable, retrying

log = logging.getLogger("kdflow.serving")

_REGISTRY = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


class VersionGone(KdflowError):
    """The registry answered: the alias is unset or the version does not exist (any more)."""


def registry_version(name: str, alias: str | None = None, version: str | None = None) -> str:
    """The version `name@alias` points at, or `version` after checking it exists. Raises VersionGone when the
    registry says no, KdflowError naming the store when it cannot be reached."""
    from mlflow.exceptions import MlflowException

    from kdflow import tracking

    what = f"{name}@{alias}" if alias else f"{name}/{version}"

    def ask():
        c = tracking.client()
        return c.get_model_version_by_alias(name, alias) if alias else c.get_model_version(name, str(version))

    try:
        mv = retrying(ask, f"resolving models:/{what}")
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND:
            raise VersionGone(f"models:/{what} is not in the registry (alias unset or version deleted)") from None
        raise RegistryUnavailable(f"MLflow registry at {redact(tracking.tracking_uri())} unreachable while "
                                  f"resolving models:/{what}: {redact(str(exc).splitlines()[0])[:300]}") from None
    except RegistryUnavailable as exc:
        raise RegistryUnavailable(f"MLflow registry at {redact(tracking.tracking_uri())} unreachable: "
                                  f"{redact(str(exc))[:400]}") from None
    return str(mv.version)


@dataclass(frozen=True)
class Source:
    kind: str                 # "dir" | "version" | "alias"
    location: str             # directory path or registered model name
    ref: str | None = None    # version or alias

    @property
    def model_name(self) -> str:
        """The model's name in metrics: the registered name, or the directory's name."""
        return self.location if self.kind != "dir" else Path(self.location).name

    @property
    def watched(self) -> bool:
        """Registry sources are polled: an alias may move, a version may be deleted."""
        return self.kind != "dir"


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
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    input_dtype: str = "float32"
    teacher: nn.Module | None = None
    teacher_uri: str | None = None
    reference: Reference = Reference()
    tokenizer: Any = None  # text models: requests carry sentences, tokenized server-side

    @property
    def arch(self) -> str:
        return str(self.spec.get("name", "unknown"))


def contract_change(old: Served, new: Served) -> tuple[str, str] | None:
    """(what, why) clients of `old` would break on `new`, None when they would not: a hot swap keeps the
    request/response contract (the output size is the class count, checked by the load's smoke test);
    changing it is a new deployment."""
    if new.input_shape != old.input_shape:
        return "input_shape", f"input shape {list(new.input_shape)} != serving {list(old.input_shape)}"
    if new.input_dtype != old.input_dtype:
        return "input_dtype", f"input dtype {new.input_dtype} != serving {old.input_dtype}"
    if len(new.classes) != len(old.classes):
        return "output_size", f"{len(new.classes)} classes != serving {len(old.classes)}"
    if new.classes != old.classes:
        return "classes", f"class names {list(new.classes[:10])} != serving {list(old.classes[:10])}"
    return None


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


def for_serving(model: nn.Module, spec: dict, backend: str, jit: bool):
    """The inference engine's path (onnxruntime when it measured faster, else BN-folded torch, traced)."""
    from kdflow.inference import engine

    run = engine(model, spec, backend if jit else "eager", spinning=False)
    for part in run.parts() if jit else []:
        if part.backend in ("torch", "eager"):
            part.fn = compile_for_serving(part.fn, tuple(int(d) for d in spec["input_shape"]))
    return run


def smoke_test(model: nn.Module, input_shape: tuple[int, ...], rows: int, classes: int) -> None:
    """The first calls of a fresh module pay one-off allocation costs; pay them before serving. Doubles as
    the smoke test: the outputs must be finite, one score per class."""
    with torch.inference_mode():
        for b in {1, rows}:
            out = model(torch.zeros((b, *input_shape)))
            if tuple(out.shape) != (b, classes) or not bool(torch.isfinite(out).all()):
                raise KdflowError(f"smoke prediction on zeros{(b, *input_shape)} gave output {tuple(out.shape)}"
                                  f"{'' if bool(torch.isfinite(out).all()) else ' with NaN/Inf'}, expected "
                                  f"{(b, classes)} finite scores")


def _compatible(teacher_spec: dict, spec: dict) -> bool:
    return (list(teacher_spec["input_shape"]) == list(spec["input_shape"])
            and int(teacher_spec["num_classes"]) == int(spec["num_classes"]))


class Loader:
    """Loads `Served` versions; keeps the last two teachers so a swap between students of one teacher
    does not reload it."""

    def __init__(self, source: Source, teacher_dir: str | None = None, warm_rows: int = 1, jit: bool = True,
                 backend: str = "auto"):
        self.source = source
        self.teacher_dir = teacher_dir
        self.warm_rows = warm_rows
        self.jit, self.backend = jit, backend
        self._teachers: OrderedDict[str, tuple[nn.Module, dict]] = OrderedDict()

    def resolve(self) -> str:
        """The version the source points at now."""
        if self.source.kind == "dir":
            return self._dir_version()
        if self.source.kind == "version":
            return registry_version(self.source.location, version=str(self.source.ref))
        return registry_version(self.source.location, alias=str(self.source.ref))

    def _dir_version(self) -> str:
        spec_version = _spec_version(Path(self.source.location))
        return spec_version or "local-" + sha256_file(Path(self.source.location) / "model.pt")[:8]

    def load(self, version: str) -> Served:
        if self.source.kind == "dir":
            model, spec = load_trusted(self.source.location, f"model directory {self.source.location}")
            return self._finish(model, spec, self.source.model_name, version,
                                spec.get("reference") or {}, self.teacher_dir, self.teacher_dir)
        from kdflow import tracking

        name = self.source.location
        tmp = Path(tempfile.mkdtemp(prefix="kdflow-serve-"))
        ref = f"models:/{name}/{version}"
        try:
            model, spec = load_trusted(retrying(lambda: tracking.download_model(ref, tmp), f"downloading {ref}"), ref)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # weights are in memory now
        tags = retrying(lambda: tracking.client().get_model_version(name, version), f"reading {ref}").tags
        refs = {k[len(tracking.REF_PREFIX):]: v for k, v in tags.items() if k.startswith(tracking.REF_PREFIX)}
        uri = tags.get(tracking.TEACHER_TAG)
        if uri is not None:
            try:
                check_uri(uri, f"teacher of models:/{name}/{version} (tag {tracking.TEACHER_TAG})")
            except KdflowError as exc:
                log.error("%s; shadow check off for this version", exc)
                uri = None
        return self._finish(model, spec, name, version, refs or spec.get("reference") or {}, uri, uri)

    def _finish(self, model, spec, name, version, refs, teacher_src, teacher_uri) -> Served:
        shape = tuple(int(d) for d in spec["input_shape"])
        classes = tuple(classes_of(spec))
        embedding = spec.get("task") == "embedding"  # a sentence encoder answers with vectors: no shadow check
        teacher = self._teacher(teacher_src, spec) if teacher_src and not embedding else None
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:  # token ids vary in length: text models run eager, untraced
            model = for_serving(model, spec, self.backend, self.jit)
        smoke_test(model, shape, self.warm_rows, int(spec["embedding_dim"]) if embedding else len(classes))
        dtype = "text" if tokenizer is not None else str(spec.get("input_dtype", "float32"))
        return Served(model, spec, name, str(version), classes, shape, dtype,
                      teacher, redact(teacher_uri) if teacher is not None and teacher_uri else None,
                      reference_from(refs, classes), tokenizer)

    def _teacher(self, src: str, spec: dict) -> nn.Module | None:
        from kdflow import tracking

        if src not in self._teachers:
            try:
                if Path(src).is_dir():
                    model, tspec = load_trusted(src, f"teacher {src}")
                else:
                    tmp = Path(tempfile.mkdtemp(prefix="kdflow-teacher-"))
                    try:
                        model, tspec = load_trusted(tracking.download_model(src, tmp), f"teacher {redact(src)}")
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
            except KdflowError as exc:
                log.error("shadow teacher %s unavailable, shadow check off for this version: %s", redact(src), exc)
                return None
            model = for_serving(model, tspec, self.backend, self.jit)
            smoke_test(model, tuple(tspec["input_shape"]), 1, int(tspec["num_classes"]))
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
