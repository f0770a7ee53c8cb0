"""KD losses by name, chosen in params.yaml (see `registry`).

Output losses (`distill.loss`): fn(student_logits, teacher_logits, y, temperature, alpha, params) ->
{term: tensor}, already weighted; a multi-teacher store reaches them combined by `ensemble.combine`.
Feature losses (`distill.features[].method`): fn(student_feature, teacher_feature, params) -> scalar,
registered with `adapter` (a shape mismatch is bridged by a trained adapter), `conv_only`, `output` (which
element of a tuple output is read), `token_mask` (fn takes `mask=`: padding left out) and `check`.
Importing this package registers every loss below; a new loss is one module + its import here.
"""

from kdflow.losses import (  # noqa: F401  (registration on import)
    attention,
    attention_probs,
    dkd,
    embedding,
    ensemble,
    hint,
    kd,
)
from kdflow.losses.registry import (
    COMBINERS,
    FEATURE_LOSSES,
    LOSSES,
    register_combiner,
    register_feature_loss,
    register_loss,
)

__all__ = ["COMBINERS", "FEATURE_LOSSES", "LOSSES", "register_combiner", "register_feature_loss", "register_loss"]
