"""Real servers inside the test process (uvicorn on 127.0.0.1, a free port, the production config and
limits) and versions written straight into a real MLflow sqlite store — including the hostile ones
an attacker with registry write access could write, which `kdflow.models.mlflow_model.register_model` would refuse."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import torch

from kdflow.serving.limits import HttpLimits, uvicorn_config
from tests.support.harness import LOCAL, free_port


@contextlib.contextmanager
def serve(app, limits: HttpLimits = HttpLimits(), ready: str = "/healthz") -> Iterator[str]:
    """Serve `app` with uvicorn in a thread until the block ends; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, LOCAL, port, limits, "warning"))
    thread = threading.Thread(target=server.run, name="live-uvicorn", daemon=True)
    thread.start()
    base = f"http://{LOCAL}:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    httpx.get(base + ready, timeout=10)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(15)


def model_dir(path: Path, seed: int = 0, length: int = 6, classes: int = 3, **spec_extra) -> Path:
    from kdflow.models import build_model, save_model

    torch.manual_seed(seed)
    spec = {"name": "mlp", "kwargs": {"hidden": [8]}, "input_shape": [1, length], "num_classes": classes,
            "mean": [0.0], "std": [1.0], "classes": [f"c{k}" for k in range(classes)]}
    save_model(build_model(spec), path, spec)
    if spec_extra:  # hostile or odd specs are written as-is, never built
        import json

        doc = json.loads((path / "model.json").read_text())
        (path / "model.json").write_text(json.dumps({**doc, **spec_extra}))
    return path


def register_dir(name: str, directory: Path, tags: dict[str, str] | None = None) -> str:
    """Register `directory` (model.json + model.pt, as-is) as a new version, laid out like
    `kdflow.models.mlflow_model.register_model` lays it out (`model/extra_files/`). Returns the version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from kdflow import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri())
    # the fluent API caches the active experiment's id across stores: an id of an earlier test's store would
    # not exist in this one ("No Experiment with id=3 exists"), so name the experiment in this store
    mlflow.set_experiment("kdflow-tests")
    with mlflow.start_run(run_name=f"register-{directory.name}") as run:
        mlflow.log_artifacts(str(directory), "model/extra_files")
    c = tracking.client()
    with contextlib.suppress(MlflowException):  # exists already
        c.create_registered_model(name)
    version = str(c.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)
    for k, v in (tags or {}).items():
        c.set_model_version_tag(name, version, k, v)
    return version
