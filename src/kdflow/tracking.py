"""MLflow: one run per stage with lineage tags, the model registry and its aliases.

Default store: `sqlite:///mlflow.db` in the working directory (gitignored); any tracking
server through `MLFLOW_TRACKING_URI`. Promotion and rollback move aliases, never stages.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from kdflow.errors import KdflowError

log = logging.getLogger("kdflow.tracking")
T = TypeVar("T")

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

DEFAULT_URI = "sqlite:///mlflow.db"
CHAMPION, CHALLENGER = "champion", "challenger"
PREVIOUS_TAG = "kdflow.previous_champion"
TEACHER_TAG = "kdflow.teacher_uri"
PROMOTED_AT_TAG = "kdflow.promoted_at"
REF_PREFIX = "kdflow.ref."  # reference values from evaluation: teacher_agreement, confidence_mean, class_share.<k>
# MLflow's answer for a missing model/version (RESOURCE_DOES_NOT_EXIST) or alias (INVALID_PARAMETER_VALUE)
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
# MLflow error codes that say "ask again later": a locked sqlite store, an overloaded or unreachable server
TRANSIENT = ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED",
             "SERVICE_UNDER_MAINTENANCE", "ABORTED")


class RegistryUnavailable(KdflowError):
    """The registry could not be asked (an error that may pass): not an answer about the model."""


def transient(exc: BaseException) -> bool:
    """True for errors that say nothing about the model or version asked for: the store is locked, busy
    or unreachable. A missing version, a refused spec or a corrupt file is not transient."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, RegistryUnavailable):
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code in TRANSIENT
    if isinstance(exc, FileNotFoundError):
        return False
    try:
        import requests

        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
    except ImportError:  # pragma: no cover - requests comes with mlflow
        pass
    return isinstance(exc, ConnectionError | TimeoutError)


def retrying(fn: Callable[[], T], what: str, attempts: int = 3, backoff_s: float = 0.15) -> T:
    """`fn()`, called again (up to `attempts` times, backoff_s, 2x backoff_s, ... with jitter) while it raises a
    transient registry error; then RegistryUnavailable naming `what`. Other errors pass at once.
    (tenacity is not a dependency; this is all of it the registry calls need.)"""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not transient(exc):
                raise
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if attempt == attempts:
                raise RegistryUnavailable(f"MLflow registry unavailable while {what} ({attempts} attempts): "
                                          f"{first}") from None
            log.debug("registry error while %s (attempt %d/%d): %s", what, attempt, attempts, first)
            time.sleep(backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


def client():
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(), registry_uri=tracking_uri())


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def lineage(cfg, data_hash: str | None) -> dict[str, str]:
    return {"git_sha": git_sha(), "data_hash": data_hash or "unknown", "params_hash": cfg.digest()}


def lineage_tags(cfg, data_hash: str | None) -> dict[str, str]:
    return {f"kdflow.{k}": v for k, v in lineage(cfg, data_hash).items()}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@contextlib.contextmanager
def stage_run(cfg, stage: str, section: dict, data_hash: str | None) -> Iterator[Any]:
    """An MLflow run for one stage: tags (stage + lineage) and the params the stage reads."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(cfg.register.experiment)
    with mlflow.start_run(run_name=stage, tags={"kdflow.stage": stage, **lineage_tags(cfg, data_hash)}) as run:
        flat = {k: str(v)[:500] for k, v in _flatten(section).items()}
        if flat:
            mlflow.log_params(flat)
        yield run


def log_metrics(metrics: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)})


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    if tags:
        mlflow.set_tags(tags)


def log_artifacts(*paths: Path) -> None:
    """Small manifests and reports only; bulky arrays stay in DVC/KFP artifacts."""
    import mlflow

    for path in paths:
        if Path(path).is_file():
            mlflow.log_artifact(str(path))


def download_model(uri: str, dst: Path | None = None) -> Path:
    """Fetch a registered kdflow model (`models:/<name>@<alias>` or `models:/<name>/<version>`) into a
    directory holding model.json + model.pt, ready for `kdflow.models.load_model`."""
    import mlflow

    dst = Path(dst or tempfile.mkdtemp(prefix="kdflow-model-"))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                         tracking_uri=tracking_uri()))
    except Exception as exc:
        kind = RegistryUnavailable if transient(exc) else KdflowError  # the registry blinked vs. the model is bad
        raise kind(f"cannot fetch model {uri}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                   ) from None
    extra = local / "extra_files" if (local / "extra_files").is_dir() else local
    if not (extra / "model.json").is_file():
        raise KdflowError(f"{uri} is not a kdflow model (no extra_files/model.json)")
    return extra


def resolve_alias(name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the registry answers that it is unset. Any other error
    (store locked, server down) raises: "could not ask" is not "not set"."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND:
            return None
        raise


def promote(name: str, version: str) -> str | None:
    """Move `champion` to `version`, remembering the previous champion on the new version."""
    c = client()
    previous = resolve_alias(name, CHAMPION)
    if previous == version:
        return previous
    if previous is not None:
        c.set_model_version_tag(name, version, PREVIOUS_TAG, previous)
    # the rollback controller's watch window starts here, even if it restarts later
    c.set_model_version_tag(name, version, PROMOTED_AT_TAG, datetime.now(UTC).isoformat())
    c.set_registered_model_alias(name, CHAMPION, version)
    return previous
