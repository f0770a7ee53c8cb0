"""Loss, feature-loss and combiner names with their pydantic params models (torch-free).

`kdflow.config` validates `distill.loss` + `distill.loss_params`, `distill.features[].method` + `params`
and `ensemble.combine` + `combine_params` against these tables when params.yaml loads, so a typo fails at
start, not mid-training. The torch functions register under the same names in `kdflow.losses`
(`@register_loss("dkd")` takes the params model declared here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class NoParams(BaseModel):
    """A loss without parameters of its own (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid")


class DKDParams(NoParams):
    """`distill.loss_params` of `dkd`: KD = tckd·TCKD + nckd·NCKD."""

    tckd: float = Field(1.0, ge=0, description="target-class term weight (the paper's alpha = 1)")
    nckd: float = Field(8.0, ge=0, description="non-target-class term weight (the paper's beta = 8)")


class MseFirst(NoParams):
    """`distill.loss_params` of `embedding_mse`."""

    mse: float = Field(1.0, ge=0, description="weight of the mean squared error (per vector element)")
    cosine: float = Field(0.0, ge=0, description="weight of 1 - cosine similarity (per sentence)")


class CosineFirst(MseFirst):
    """`distill.loss_params` of `embedding_cosine`."""

    mse: float = Field(0.0, ge=0, description="weight of the mean squared error (per vector element)")
    cosine: float = Field(1.0, ge=0, description="weight of 1 - cosine similarity (per sentence)")


class HintParams(NoParams):
    """`features[].params` of `hint`."""

    loss: Literal["mse", "cosine"] = "mse"  # distance of the adapted student feature to the teacher's


class AttentionParams(NoParams):
    """`features[].params` of `attention`."""

    p: float = Field(2.0, gt=0, description="power of |activation| pooled over channels")


class AttentionProbsParams(NoParams):
    """`features[].params` of `attention_probs`."""

    loss: Literal["kl", "mse"] = "kl"


@dataclass(frozen=True)
class Name:
    name: str
    params: type[BaseModel] = NoParams
    target: str = "logits"  # what the soft-target store holds for it: logits | embedding
    help: str = ""


class Names(dict[str, Name]):
    """One table of names: `check(name, raw)` validates a name and its params (defaults filled)."""

    def __init__(self, key: str, *names: Name):
        super().__init__((n.name, n) for n in names)
        self.key = key  # the params.yaml key that names an entry, for error messages

    def describe(self) -> str:
        return ", ".join(f"{n.name} ({n.help})" if n.help else n.name for n in self.values())

    def check(self, name: str, raw: dict[str, Any] | BaseModel | None) -> dict[str, Any]:
        """`raw` validated against `name`'s params model; ValueError naming the problem."""
        if name not in self:
            raise ValueError(f"unknown {self.key} '{name}'; allowed: {', '.join(sorted(self))}")
        model = self[name].params
        try:
            return (raw if isinstance(raw, model) else model.model_validate(dict(raw or {}))).model_dump()
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{self.key} '{name}' params: {problems} (valid keys: "
                             f"{', '.join(model.model_fields) or 'none'})") from None


LOSS_NAMES = Names(
    "distill.loss",
    Name("kd", help="Hinton et al."),
    Name("dkd", DKDParams, help="decoupled KD: tckd, nckd"),
    Name("embedding_mse", MseFirst, target="embedding", help="task embedding: mse, cosine"),
    Name("embedding_cosine", CosineFirst, target="embedding", help="task embedding: mse, cosine"),
)
FEATURE_LOSS_NAMES = Names(
    "distill.features method",
    Name("hint", HintParams, help="FitNets: loss mse|cosine"),
    Name("attention", AttentionParams, help="AT: p"),
    Name("attention_probs", AttentionProbsParams, help="self-attention probabilities: loss kl|mse"),
)
COMBINER_NAMES = Names(
    "ensemble.combine",
    Name("mean_prob", help="average of tempered probabilities"),
    Name("mean_logits", help="average of raw logits"),
)
