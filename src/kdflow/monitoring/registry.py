"""The controller's MLflow side: read the champion (and where it came from), roll it back."""

from __future__ import annotations

import datetime as dt

from kdflow import tracking

ROLLBACK_REASON_TAG = "kdflow.rollback.reason"
ROLLBACK_TIME_TAG = "kdflow.rollback.time"
ROLLED_BACK_TO_TAG = "kdflow.rollback.to"
PROMOTED_AT_TAG = tracking.PROMOTED_AT_TAG  # set by tracking.promote (ISO-8601)


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def champion(name: str) -> tuple[str | None, str | None, float | None]:
    """(champion version, its previous champion, its promotion time) — (None, None, None) when unset."""
    from mlflow.exceptions import MlflowException

    try:
        mv = tracking.client().get_model_version_by_alias(name, tracking.CHAMPION)
    except MlflowException as exc:
        # MLflow answers a missing model with RESOURCE_DOES_NOT_EXIST, a missing alias with INVALID_PARAMETER_VALUE
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None, None, None
        raise
    tags = mv.tags or {}
    return str(mv.version), tags.get(tracking.PREVIOUS_TAG), _epoch(tags.get(PROMOTED_AT_TAG))


def rollback(name: str, bad: str, target: str, reason: str, now: float) -> bool:
    """Move `champion` from `bad` back to `target` and tag `bad` with why and when.

    Returns False, changing nothing, when `champion` no longer points at `bad` (another replica, a
    webhook or a person moved it already): repeating a rollback is a no-op.
    """
    if tracking.resolve_alias(name, tracking.CHAMPION) != bad:
        return False
    c = tracking.client()
    c.set_registered_model_alias(name, tracking.CHAMPION, target)
    when = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds")
    for key, value in ((ROLLBACK_REASON_TAG, reason[:5000]), (ROLLBACK_TIME_TAG, when), (ROLLED_BACK_TO_TAG, target)):
        c.set_model_version_tag(name, bad, key, value)
    return True
