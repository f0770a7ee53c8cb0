"""Params as they travel through a pipeline run.

At compile time the `kubeflow` section is split off (cluster settings) and the rest becomes the
`params_yaml` pipeline parameter: YAML text, so ints stay ints (a KFP struct parameter carries
every number as a double). The typed pipeline parameters a user changes per run (`TYPED`) are
applied on top by the `resolve_params` step, which writes the params file artifact every other step
reads. Sweep trials and teacher candidates arrive as KFP structs: `restore_ints` undoes that.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from kdflow.config import Params, set_key, validate
from kdflow.errors import KdflowError
from kdflow.kfp.schema import Kubeflow

SECTION = "kubeflow"
PARAMS_FILE = "params.yaml"
# pipeline parameter -> dotted params key. "" for a string means "as in params_yaml".
TYPED: dict[str, str] = {"data_rev": "data.rev", "teacher_epochs": "teacher.train.epochs",
                         "distill_epochs": "distill.train.epochs", "temperature": "distill.temperature",
                         "alpha": "distill.alpha"}


def split(raw: dict, origin: str = "params") -> tuple[dict, Kubeflow]:
    """(stage params dict without the cluster section, cluster settings), both validated; errors name
    the bad key."""
    from pydantic import ValidationError

    from kdflow.config import _describe

    raw = copy.deepcopy(raw)
    section = raw.pop(SECTION, None) or {}
    try:
        settings = Kubeflow.model_validate(section)
    except ValidationError as exc:
        lines = [_describe({**e, "loc": (SECTION, *e["loc"])}) for e in exc.errors()]
        raise KdflowError(f"{origin}: " + "; ".join(lines)) from None
    validate(raw, origin)
    return raw, settings


def typed_defaults(params: dict) -> dict[str, Any]:
    """The typed pipeline parameters' defaults: the values the params file holds."""
    cfg = validate(params)
    out: dict[str, Any] = {}
    for name, dotted in TYPED.items():
        value: Any = cfg
        for part in dotted.split("."):
            value = getattr(value, part)
        out[name] = "" if value is None else value
    return out


def resolve(params_yaml: str, typed: dict[str, Any]) -> Params:
    """params_yaml with the typed pipeline parameters applied, validated (a bad value fails this step
    with the key named, before any training starts)."""
    raw = yaml.safe_load(params_yaml) or {}
    raw.pop(SECTION, None)
    for name, value in typed.items():
        if name not in TYPED:
            raise KdflowError(f"unknown typed pipeline parameter {name!r} (known: {sorted(TYPED)})")
        if value == "" and isinstance(value, str):
            continue  # an empty string parameter keeps the params file's value
        set_key(raw, TYPED[name], restore_ints(value))
    return validate(raw, "pipeline params")


def check_imports(uris: dict[str, str], compiled: list[str]) -> None:
    """A URI parameter (teacher_uri, data_uri) is used only by a pipeline compiled to import it; a
    value given to one that was not must fail, not be silently ignored."""
    ignored = sorted(name for name, uri in uris.items() if uri and name not in compiled)
    if ignored:
        keys = " ".join(f"-S kubeflow.{name}=URI" for name in ignored)
        raise KdflowError(f"{', '.join(ignored)} set, but this pipeline was compiled to build that artifact, not "
                          f"import it: compile with {keys}")


def write(cfg: Params, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PARAMS_FILE
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude={SECTION}), sort_keys=False))
    return path


def read(params: str | Path | dict) -> dict:
    """The params dict of a params file artifact (its directory or the file itself), or a dict as is."""
    if isinstance(params, dict):
        return copy.deepcopy(params)
    path = Path(params)
    path = path / PARAMS_FILE if path.is_dir() else path
    if not path.is_file():
        raise KdflowError(f"params file {path} not found")
    return yaml.safe_load(path.read_text()) or {}


def restore_ints(value: Any) -> Any:
    """Integral floats back to ints: KFP carries dict and list parameters as protobuf Structs, whose
    numbers are all doubles, so a trial `{seed: 1}` arrives as {seed: 1.0}."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: restore_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restore_ints(v) for v in value]
    return value


def stage_params(params: str | Path | dict, overrides: dict | None = None, section: str = "") -> Params:
    """The validated config of one pipeline step from the params file artifact. `overrides` are dotted
    keys, relative to `section` when given (a sweep trial {temperature: 2} with section 'distill'
    sets distill.temperature)."""
    raw = read(params)
    raw.pop(SECTION, None)
    prefix = f"{section}." if section else ""
    for key, value in restore_ints(overrides or {}).items():
        set_key(raw, prefix + key, value)
    return validate(raw, "pipeline params")
