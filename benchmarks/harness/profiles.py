"""Params profiles (`benchmarks/profiles/*.yaml`) and the overrides benchmarks apply to them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .env import PROFILES, ROOT

ROLES_TRAIN = ("teacher.train", "student.train", "distill.train")


def load_profile(name: str) -> dict:
    """`default` is the repo's params.yaml; otherwise `benchmarks/profiles/<name>.yaml` or a path."""
    import yaml

    path = ROOT / "params.yaml" if name == "default" else Path(name)
    if not path.is_file():
        path = PROFILES / f"{name}.yaml"
    return yaml.safe_load(path.read_text())


def with_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """A deep copy of `raw` with dotted keys set (`teacher.train.epochs` → 5)."""
    from kdflow.config import set_key

    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        set_key(out, key, value)
    return out


def scale_epochs(raw: dict, factor: float) -> dict:
    """Quick runs: every training section's epochs × factor (at least 1)."""
    return with_overrides(raw, {f"{sec}.epochs": max(1, round(_get(raw, sec).get("epochs", 10) * factor))
                                for sec in ROLES_TRAIN})


def quiet_training(raw: dict) -> dict:
    """No progress bars in benchmark logs (the bar's refresh is not what we measure).

    Only sections the profile has: a bare `finetune.train` would get `Train()`'s 10 epochs, not 0.
    """
    sections = (*ROLES_TRAIN, "finetune.train")
    return with_overrides(raw, {f"{sec}.progress_bar": False for sec in sections if _get(raw, sec)})


def _get(raw: dict, dotted: str) -> dict:
    node = raw
    for part in dotted.split("."):
        node = node.get(part, {})
    return node
