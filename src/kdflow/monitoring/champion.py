"""The controller's MLflow side: read the champion alias (and where it came from), pick a rollback
target that really serves (it exists, loads, passes a smoke prediction), move the alias back.

Every registry call is retried while the error is transient (`tracking.retrying`: a locked store, a
server answering 503); when it persists, `RegistryUnavailable` reaches the controller, which reports
the rollback as failed and tries again at its next check — "could not ask" never reads as an answer
(an alias "already moved", a target "unusable")."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from pathlib import Path

from kdflow import tracking
from kdflow.errors import KdflowError
from kdflow.serving.source import classes_of, smoke_test
from kdflow.serving.trust import load_trusted
from kdflow.tracking import NOT_FOUND, RegistryUnavailable, retrying

log = logging.getLogger("kdflow.monitor")

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


def current(name: str) -> tuple[str | None, str | None, float | None]:
    """(champion version, its previous champion, its promotion time) — (None, None, None) when unset."""
    from mlflow.exceptions import MlflowException

    try:
        mv = retrying(lambda: tracking.client().get_model_version_by_alias(name, tracking.CHAMPION),
                      f"reading {name}@{tracking.CHAMPION}")
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND:
            return None, None, None
        raise
    tags = mv.tags or {}
    return str(mv.version), tags.get(tracking.PREVIOUS_TAG), _epoch(tags.get(PROMOTED_AT_TAG))


def rollback(name: str, bad: str, target: str, reason: str, now: float) -> bool:
    """Move `champion` from `bad` back to `target` and tag `bad` with why and when.

    Returns False, changing nothing, when the registry answers that `champion` no longer points at `bad`
    (another replica, a webhook or a person moved it already): repeating a rollback is a no-op. Raises
    RegistryUnavailable when the registry cannot be asked or refuses the move. The alias move is the commit
    point: tags that cannot be written after it are logged, not raised (the champion is right either way).
    """
    if retrying(lambda: tracking.resolve_alias(name, tracking.CHAMPION), f"re-reading {name}@champion") != bad:
        return False
    c = tracking.client()
    retrying(lambda: c.set_registered_model_alias(name, tracking.CHAMPION, target),
             f"moving {name}@{tracking.CHAMPION} to version {target}")
    when = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds")
    for key, value in ((ROLLBACK_REASON_TAG, reason[:5000]), (ROLLBACK_TIME_TAG, when), (ROLLED_BACK_TO_TAG, target)):
        try:
            retrying(lambda k=key, v=value: c.set_model_version_tag(name, bad, k, v), f"tagging version {bad}")
        except RegistryUnavailable as exc:
            log.error("rolled back %s %s -> %s, but tag %s not written: %s", name, bad, target, key, exc)
    return True


def candidates(name: str, bad: str, previous: str | None) -> list[str]:
    """Rollback targets in order: the previous champion, then older versions never rolled back, newest first."""
    versions = retrying(lambda: tracking.client().search_model_versions(f"name='{name}'"),
                        f"listing the versions of {name}")
    older = sorted((int(v.version) for v in versions
                    if int(v.version) < int(bad) and ROLLBACK_REASON_TAG not in (v.tags or {})), reverse=True)
    first = [previous] if previous and previous != bad else []
    return first + [str(v) for v in older if str(v) not in first]


def unusable(name: str, version: str) -> str | None:
    """Why `version` cannot serve (None when it can): gone from the registry, not READY, refused spec (import,
    size budget, paths), corrupt weights, or a load or smoke prediction that raises or gives the wrong output.
    Raises RegistryUnavailable when the registry cannot be asked: that says nothing about the version."""
    from mlflow.exceptions import MlflowException

    try:
        mv = retrying(lambda: tracking.client().get_model_version(name, version), f"reading version {version}")
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND:
            return "not in the registry (deleted?)"
        raise
    if mv.status != "READY":
        return f"registry status {mv.status}"
    tmp = Path(tempfile.mkdtemp(prefix="kdflow-rollback-"))
    try:
        local = retrying(lambda: tracking.download_model(f"models:/{name}/{version}", tmp),
                         f"downloading version {version}")
        model, spec = load_trusted(local, f"version {version}")
        smoke_test(model, tuple(int(d) for d in spec["input_shape"]), 2, len(classes_of(spec)))
    except RegistryUnavailable:
        raise
    except Exception as exc:  # anything the version's own files make the load or the forward pass raise
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        return f"{type(exc).__name__}: {text}" if not isinstance(exc, KdflowError) else text or type(exc).__name__
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


def pick_target(name: str, bad: str, previous: str | None, limit: int = 3) -> tuple[str | None, list[str]]:
    """The first of up to `limit` candidates that can serve, and why the ones before it were skipped."""
    skipped = []
    for version in candidates(name, bad, previous)[:limit]:
        why = unusable(name, version)
        if why is None:
            return version, skipped
        log.error("rollback target %s version %s skipped: %s", name, version, why)
        skipped.append(f"v{version}: {why}")
    return None, skipped
