"""Losses by name, in the style of torchdistill's `register_loss`: configs name a loss, never import it.

Three tables: output losses (`distill.loss`), feature losses (`distill.features[].method`) and teacher
combiners (`ensemble.combine`). Each name and the small pydantic model of its own parameters are
declared torch-free in `kdflow.names.losses`; `kdflow.config` validates `distill.loss_params`,
`features[].params` and `ensemble.combine_params` against them when params.yaml is loaded (a typo fails
at start, not mid-training) and a function registers here under a declared name. Output and feature
losses return *named, already weighted* terms (as mdistiller's `forward_train` returns its `losses_dict`):
the trainer sums them and logs each under its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from kdflow.names.losses import COMBINER_NAMES, FEATURE_LOSS_NAMES, LOSS_NAMES, Names, NoParams

__all__ = ["COMBINERS", "FEATURE_LOSSES", "LOSSES", "Entry", "NoParams", "Table"]


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    params: type[BaseModel]
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. a feature loss's adapter / conv_only flags

    def bind(self, raw: dict[str, Any] | BaseModel | None = None) -> BaseModel:
        return raw if isinstance(raw, self.params) else self.params.model_validate(dict(raw or {}))


class Table(dict[str, Entry]):
    """One registry: `@table.register("name", **meta)` adds a function under a name declared in `names`."""

    def __init__(self, names: Names):
        super().__init__()
        self.names = names
        self.key = names.key  # the params.yaml key that names an entry, for error messages

    def register(self, name: str, **meta: Any):
        def add(fn):
            if name in self:
                raise ValueError(f"{self.key}: '{name}' is registered twice")
            if name not in self.names:
                raise ValueError(f"{self.key}: '{name}' is not declared in kdflow/names/losses.py")
            declared = self.names[name]
            self[name] = Entry(name, fn, declared.params, {"target": declared.target, **meta})
            return fn
        return add

    def get_entry(self, name: str) -> Entry:
        if name not in self:
            raise KeyError(f"unknown {self.key} '{name}'; allowed: {', '.join(sorted(self))}")
        return self[name]

    def check(self, name: str, raw: dict[str, Any]) -> dict[str, Any]:
        """`raw` validated against `name`'s params model (defaults filled); ValueError naming the problem."""
        return self.names.check(name, raw)


LOSSES = Table(LOSS_NAMES)
FEATURE_LOSSES = Table(FEATURE_LOSS_NAMES)
COMBINERS = Table(COMBINER_NAMES)

register_loss = LOSSES.register
register_feature_loss = FEATURE_LOSSES.register
register_combiner = COMBINERS.register
