"""The bad-promotion scenario, end to end on real processes (shared by
tests/integration/test_rollback_e2e.py and benchmarks/rollback.py).

A local MLflow store holds two students of one teacher on a small synthetic signal task:
v1 is good; v2 was trained on shuffled labels but carries v1's evaluation references (an
evaluation/serving mix-up that slipped past the gate). The scenario serves v1, drives steady
traffic, promotes v2, and measures how long the controller takes to roll back and the server to
swap back, counting every failed request.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import torch
from prometheus_client.parser import text_string_to_metric_families

from kdflow.models.mlflow_model import register_model
from kdflow.monitoring import rules
from kdflow.monitoring.champion import ROLLBACK_REASON_TAG
from kdflow.monitoring.prom import Prometheus
from tests.support import harness

CLASSES, LENGTH = 4, 40


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sines, one frequency per class: shape (n, 1, 40), easily learned by a tiny model."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    t = np.linspace(0, 1, LENGTH)
    templates = np.stack([np.sin(2 * np.pi * (k + 1) * t + k) for k in range(CLASSES)])
    x = templates[y] + 0.4 * rng.standard_normal((n, LENGTH))
    return x[:, None, :].astype(np.float32), y


def _spec(name: str, **kwargs) -> dict:
    return {"name": name, "kwargs": kwargs, "input_shape": [1, LENGTH], "num_classes": CLASSES, "mean": [0.0],
            "std": [1.0], "classes": [f"wave{k}" for k in range(CLASSES)]}


def _train(spec: dict, x: np.ndarray, y: np.ndarray, seed: int, steps: int = 150):
    from kdflow.models import build_model

    torch.manual_seed(seed)
    model = build_model(spec)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval()


def _references(student, teacher, x: np.ndarray) -> dict[str, str]:
    """What the evaluate stage records: agreement with the teacher, mean confidence, class shares."""
    with torch.no_grad():
        probs = torch.softmax(student(torch.from_numpy(x)), 1)
        agree = (probs.argmax(1) == teacher(torch.from_numpy(x)).argmax(1)).float().mean()
    share = np.bincount(probs.argmax(1).numpy(), minlength=CLASSES) / len(x)
    refs = {"teacher_agreement": float(agree), "confidence_mean": float(probs.max(1).values.mean()),
            **{f"class_share.{k}": float(s) for k, s in enumerate(share)}}
    return {f"kdflow.ref.{k}": f"{v:.6f}" for k, v in refs.items()}


@contextlib.contextmanager
def tracking_store(uri: str) -> Iterator[None]:
    """Point this process's MLflow at `uri` for the block, then restore exactly what was there (an
    explicitly set URI, or none, and the environment variable)."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # the restoring context MLflow has

    old = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):  # sets the fluent API's URI and the environment variable
            yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


@dataclass
class Store:
    workdir: Path
    uri: str
    name: str
    good: str
    bad: str
    traffic: list = field(repr=False)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    # Tiny models on a shared 2-core box: a second intra-op thread made training 40x slower under load.
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def store_uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def init_store(workdir: Path) -> str:
    """Create the sqlite store and its schema now, so processes started before the models are
    registered find a ready database (no two processes race to migrate it)."""
    from kdflow import tracking

    workdir.mkdir(parents=True, exist_ok=True)
    uri = store_uri(workdir)
    with tracking_store(uri):
        tracking.client().search_registered_models()
    return uri


def build_store(workdir: Path, name: str = "kdflow-e2e") -> Store:
    """Train teacher + good/bad students (seconds), register both, make the good one champion."""
    with torch_threads(1):
        return _build_store(workdir, name)


def _build_store(workdir: Path, name: str) -> Store:
    import mlflow

    from kdflow import tracking
    from kdflow.models import save_model

    workdir.mkdir(parents=True, exist_ok=True)
    x, y = synthetic(1200, seed=0)
    xv, _ = synthetic(400, seed=1)
    teacher = _train(_spec("mlp", hidden=[64]), x, y, seed=0)
    good = _train(_spec("mlp", hidden=[16]), x, y, seed=1)
    bad = _train(_spec("mlp", hidden=[16]), x, np.random.default_rng(2).permutation(y), seed=2)
    dirs = {}
    for role, model, width in (("teacher", teacher, 64), ("good", good, 16), ("bad", bad, 16)):
        dirs[role] = workdir / "models" / role
        save_model(model, dirs[role], _spec("mlp", hidden=[width]))
    refs = _references(good, teacher, xv)  # the bad version carries the good one's references
    uri = store_uri(workdir)
    with tracking_store(uri):
        mlflow.set_experiment("kdflow-e2e")
        versions = {}
        for role in ("good", "bad"):
            with mlflow.start_run(run_name=f"register-{role}"):
                versions[role] = register_model(dirs[role], name, refs, teacher_dir=dirs["teacher"])
        tracking.promote(name, versions["good"])
    return Store(workdir, uri, name, versions["good"], versions["bad"], xv[:200].tolist())


@dataclass
class RollbackRun:
    startup_s: float                  # processes started (and store built, if it was) until all ready
    promote_to_rollback_s: float
    promote_to_bad_served_s: float | None
    rollback_to_good_served_s: float | None  # can be ~0.2 s negative: the alias is polled that often
    requests: int
    failed: int
    statuses: dict[str, int]
    served_by: dict[str, int]
    reason: str
    rollbacks_total: float
    webhooks: float
    failures: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def metric_sum(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`, in a /metrics text."""
    return sum(s.value for family in text_string_to_metric_families(exposition) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _wait(predicate, timeout: float, what: str, procs: harness.Processes, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{procs.logs()}")


def run_rollback(store: Store | None, workdir: Path | None = None, *, name: str = "kdflow-e2e", rate: float = 80.0,
                 window: str = "6s", for_: str = "2s", alertmanager: bool = True,
                 timeout_s: float = 60.0) -> tuple[Store, RollbackRun]:
    """Serve v1 under load, promote v2, wait for the rollback and the swap back; all processes are
    stopped (by PID) before returning.

    With `store=None` the store is built in `workdir/store` while the processes start (the server
    waits for its alias, the controller for a champion): the run then costs max(build, boot), not the sum.
    """
    from kdflow import tracking

    workdir = Path(workdir or tempfile.mkdtemp(prefix="kdflow-rollback-"))
    workdir.mkdir(parents=True, exist_ok=True)
    uri = store.uri if store is not None else init_store(workdir / "store")
    sport, pport, cport, aport = (harness.free_port() for _ in range(4))
    env = harness.child_env(MLFLOW_TRACKING_URI=uri)
    prom_url = f"http://{harness.LOCAL}:{pport}"
    started = time.time()
    name = store.name if store is not None else name
    with harness.Processes(workdir) as procs, tracking_store(uri):
        server = procs.start("server", harness.server_cmd(
            f"models:/{name}@champion", sport, "--alias-poll", "1", "--shadow-rate", "1.0",
            "--threads", "1"), env)
        am = None
        if alertmanager:
            am = procs.start("alertmanager", harness.alertmanager_cmd(
                workdir / "am", aport, f"http://{harness.LOCAL}:{cport}/alertmanager"))
        prom = procs.start("prometheus", harness.prometheus_cmd(
            workdir / "prom", pport,
            {"kdflow-serving": [f"{harness.LOCAL}:{sport}"], "kdflow-controller": [f"{harness.LOCAL}:{cport}"]},
            rules.retime(rules.load(), window, for_), f"{harness.LOCAL}:{aport}" if alertmanager else None))
        controller = procs.start("controller", harness.controller_cmd(
            name, cport, prom_url, "--interval", "1", "--cooldown", "30", "--watch-window", "600",
            "--query-timeout", "2"), harness.controller_env(MLFLOW_TRACKING_URI=uri))
        if store is None:
            store = build_store(workdir / "store", name)
        harness.wait_http(f"{prom_url}/-/ready", prom, 30)
        if am is not None:
            harness.wait_http(f"http://{harness.LOCAL}:{aport}/-/ready", am, 30)
        harness.wait_http(f"http://{harness.LOCAL}:{cport}/healthz", controller, 60)
        harness.wait_http(f"http://{harness.LOCAL}:{sport}/readyz", server, 90)
        ready = time.time()

        with harness.load(f"http://{harness.LOCAL}:{sport}/predict", store.traffic, rate=rate) as gen, \
                contextlib.closing(Prometheus(prom_url)) as prometheus:
            def has_traffic(version: str) -> bool:
                return any(labels.get("model_version") == version and value > 0
                           for labels, value in prometheus.query("model_version:kdflow_requests:rate"))

            def good_again() -> float | None:  # first good answer after the last switch to bad
                bad_at = gen.last_time(store.bad)
                return gen.first_time(store.good, after=bad_at) if bad_at is not None else None

            _wait(lambda: has_traffic(store.good), 30, f"Prometheus to see traffic on v{store.good}", procs)
            promoted = time.time()
            tracking.promote(store.name, store.bad)
            _wait(lambda: tracking.resolve_alias(store.name, tracking.CHAMPION) == store.good, timeout_s,
                  f"the controller to roll v{store.bad} back", procs)
            rolled_back = time.time()
            if gen.first_time(store.bad, after=promoted) is not None:  # else: rolled back before the server swapped
                _wait(good_again, 30, f"the server to serve v{store.good} again", procs)
            time.sleep(1.0)  # keep traffic flowing past the swap back
        text = httpx.get(f"http://{harness.LOCAL}:{cport}/metrics", timeout=5).text
        tags = tracking.client().get_model_version(store.name, store.bad).tags
        bad_at, good_at = gen.first_time(store.bad, after=promoted), good_again()
        return store, RollbackRun(
            startup_s=round(ready - started, 2),
            promote_to_rollback_s=round(rolled_back - promoted, 2),
            promote_to_bad_served_s=round(bad_at - promoted, 2) if bad_at else None,
            rollback_to_good_served_s=round(good_at - rolled_back, 2) if good_at else None,
            requests=gen.total, failed=gen.failed, statuses=dict(gen.statuses), served_by=gen.served_by(),
            reason=tags.get(ROLLBACK_REASON_TAG, ""),
            rollbacks_total=metric_sum(text, "kdflow_rollbacks_total"),
            webhooks=metric_sum(text, "kdflow_controller_checks_total", trigger="alertmanager"),
            failures=gen.failures,
        )
