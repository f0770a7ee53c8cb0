"""Shared test helpers: the tiny profile as a dict or a validated config."""

from pathlib import Path

import yaml

TESTS = Path(__file__).parent
REPO = TESTS.parent
TINY = TESTS / "params-tiny.yaml"


def tiny_dict(**overrides) -> dict:
    from kdflow.config import set_key

    raw = yaml.safe_load(TINY.read_text())
    for k, v in overrides.items():
        set_key(raw, k.replace("__", "."), v)
    return raw


def tiny_cfg(**overrides):
    from kdflow.config import validate

    return validate(tiny_dict(**overrides))
