"""Losses by name, in the style of torchdistill's `register_loss`: configs name a loss, never import it.

Three tables: output losses (`distill.loss`), feature losses (`distill.features[].method`) and teacher
combiners (`ensemble.combine`). Each entry carries a small pydantic model of its own parameters,
declared beside the loss; `kdflow.config` validates `distill.loss_params`, `features[].params` and
`ensemble.combine_params` against it when params.yaml is loaded, so a typo fails at start, not
mid-training. Output and feature losses return *named, already weighted* terms (as mdistiller's
`forward_train` returns its `losses_dict`): the trainer sums them and logs each under its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class NoParams(BaseModel):
    """A loss without parameters of its own (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    params: type[BaseModel]
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. a feature loss's adapter / conv_only flags

    def bind(self, raw: dict[str, Any] | BaseModel | None = None) -> BaseModel:
        return raw if isinstance(raw, self.params) else self.params.model_validate(dict(raw or {}))


class Table(dict[str, Entry]):
    """One registry: `@table.register("name", params=Model, **meta)` adds a function under a name."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key  # the params.yaml key that names an entry, for error messages

    def register(self, name: str, params: type[BaseModel] = NoParams, **meta: Any):
        def add(fn):
            if name in self:
                raise ValueError(f"{self.key}: '{name}' is registered twice")
            self[name] = Entry(name, fn, params, meta)
            return fn
        return add

    def get_entry(self, name: str) -> Entry:
        if name not in self:
            raise KeyError(f"unknown {self.key} '{name}'; allowed: {', '.join(sorted(self))}")
        return self[name]

    def check(self, name: str, raw: dict[str, Any]) -> dict[str, Any]:
        """`raw` validated against `name`'s params model (defaults filled); ValueError naming the problem."""
        try:
            entry = self.get_entry(name)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        try:
            return entry.bind(raw).model_dump()
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{self.key} '{name}' params: {problems} (valid keys: "
                             f"{', '.join(entry.params.model_fields) or 'none'})") from None


LOSSES = Table("distill.loss")
FEATURE_LOSSES = Table("distill.features method")
COMBINERS = Table("ensemble.combine")

register_loss = LOSSES.register
register_feature_loss = FEATURE_LOSSES.register
register_combiner = COMBINERS.register
