"""Params as they travel through a pipeline: a plain dict, validated by kdflow.config in every step.

The `kubeflow` section is compile-time cluster settings; it is split off before the rest becomes
the pipeline's `params` parameter.
"""

from __future__ import annotations

import copy
from typing import Any

from kdflow.cluster.schema import Kubeflow
from kdflow.config import Params, set_key, validate
from kdflow.errors import KdflowError

SECTION = "kubeflow"


def split(raw: dict, origin: str = "params") -> tuple[dict, Kubeflow]:
    """(stage params dict, cluster settings), both validated; errors name the bad key."""
    from pydantic import ValidationError

    from kdflow.config import _describe

    raw = copy.deepcopy(raw)
    section = raw.pop(SECTION, None) or {}
    try:
        settings = Kubeflow.model_validate(section)
    except ValidationError as exc:
        lines = [_describe({**e, "loc": (SECTION, *e["loc"])}) for e in exc.errors()]
        raise KdflowError(f"{origin}: " + "; ".join(lines)) from None
    full = validate(raw, origin)
    kfp_params = drop_none(raw)
    if validate(kfp_params, origin).digest() != full.digest():
        raise KdflowError(f"{origin}: a null value differs from its default; KFP parameters cannot carry null, "
                          "so write the value out")
    return kfp_params, settings


def drop_none(value: Any) -> Any:
    """Without null entries: KFP parameter defaults cannot hold None (a null key means its default)."""
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


def restore_ints(value: Any) -> Any:
    """Integral floats back to ints: KFP carries dict parameters as protobuf Structs, whose numbers
    are all doubles, so `channels: [25, 25]` arrives as [25.0, 25.0]."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: restore_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restore_ints(v) for v in value]
    return value


def stage_params(params: dict, overrides: dict | None = None, section: str = "") -> Params:
    """The validated config of one pipeline step. `overrides` are dotted keys, relative to `section`
    when given (a sweep trial {temperature: 2} with section 'distill' sets distill.temperature)."""
    raw = restore_ints(copy.deepcopy(params))
    if SECTION not in Params.model_fields:  # until config.Params carries the kubeflow section
        raw.pop(SECTION, None)
    prefix = f"{section}." if section else ""
    for key, value in restore_ints(overrides or {}).items():
        set_key(raw, prefix + key, value)
    return validate(raw, "pipeline params")
