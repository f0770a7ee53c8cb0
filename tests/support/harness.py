"""Real processes on 127.0.0.1 for the end-to-end test and the benchmarks: free ports, child
environments, start/stop by PID, readiness waits, Prometheus/Alertmanager configs, and a load
generator that counts every failed request."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import yaml

import kdflow

SRC = Path(kdflow.__file__).resolve().parents[1]
LOCAL = "127.0.0.1"
WEBHOOK_TOKEN = "kdflow-test-webhook-token"  # what the controller requires and Alertmanager sends


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    env.update(extra)
    return env


def need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found on PATH (Debian package: prometheus / prometheus-alertmanager)")
    return path


class Proc:
    """One child process, its output in a log file; stopped by PID: SIGTERM, then SIGKILL."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.cmd = cmd
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.popen = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env or child_env(),
                                      stdin=subprocess.DEVNULL)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self) -> None:
        if self.alive():
            self.popen.terminate()

    def stop(self, timeout: float = 10.0) -> int | None:
        self.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        self._log.close()
        return self.popen.returncode

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Processes:
    """Owns started processes; `stop_all` (also on context exit) stops every one of them by PID."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, cmd, self.log_dir, env)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):  # SIGTERM to all first: they shut down in parallel
            with contextlib.suppress(Exception):
                proc.terminate()
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}, rc {p.popen.poll()}) ---\n{p.tail(lines)}" for p in self.procs)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


def wait_http(url: str, proc: Proc | None = None, timeout: float = 60.0, ok: Callable[[httpx.Response], bool] =
              lambda r: r.status_code == 200) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before {url} answered:\n{proc.tail()}")
        try:
            r = httpx.get(url, timeout=2.0)
            if ok(r):
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last})" + (f"\n{proc.tail()}" if proc else ""))


# -- commands ---------------------------------------------------------------------------------------
def server_cmd(model: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "kdflow.serving.app", "--model", model, "--host", LOCAL, "--port", str(port),
            *extra]


def controller_env(**extra: str) -> dict[str, str]:
    return child_env(KDFLOW_WEBHOOK_TOKEN=WEBHOOK_TOKEN, **extra)


def controller_cmd(model_name: str, port: int, prometheus_url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "kdflow.monitoring.controller", "--model-name", model_name, "--host", LOCAL,
            "--port", str(port), "--prometheus-url", prometheus_url, *extra]


def prometheus_cmd(workdir: Path, port: int, scrape: dict[str, list[str]], rules: dict | None = None,
                   alertmanager: str | None = None, interval: str = "1s") -> list[str]:
    """Write a Prometheus config (scrape jobs → host:port targets; rules as a dict) and return the command."""
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                           for job, targets in scrape.items()],
    }
    if rules is not None:
        (workdir / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config["rule_files"] = [str(workdir / "rules.yml")]
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return [need_binary("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address={LOCAL}:{port}",
            "--storage.tsdb.retention.time=1h", "--log.level=warn"]


def alertmanager_cmd(workdir: Path, port: int, webhook_url: str) -> list[str]:
    """Alertmanager routing rollback="true" alerts to the controller's webhook (with its bearer token, read from a
    file as in a cluster), no grouping delay."""
    workdir.mkdir(parents=True, exist_ok=True)
    token = workdir / "webhook-token"
    token.write_text(WEBHOOK_TOKEN)
    auth = {"authorization": {"type": "Bearer", "credentials_file": str(token)}}
    config = {
        "route": {"receiver": "null", "group_by": ["alertname", "model_name", "model_version"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h",
                  "routes": [{"receiver": "kdflow-controller", "matchers": ['rollback="true"']}]},
        "receivers": [{"name": "null"},
                      {"name": "kdflow-controller", "webhook_configs": [{"url": webhook_url, "send_resolved": False,
                                                                         "http_config": auth}]}],
    }
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return [need_binary("prometheus-alertmanager"), f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'am-data'}", f"--web.listen-address={LOCAL}:{port}",
            "--cluster.listen-address=", "--log.level=warn"]


# -- traffic --------------------------------------------------------------------------------------
class LoadGenerator:
    """Steady /predict traffic from `workers` threads at about `rate` requests/s in total.

    Every request is accounted for: a non-200 answer or a transport error is a failure. The
    model_version of each answer is recorded with its time, so a test can see the swaps.
    """

    def __init__(self, url: str, inputs: list, rate: float = 100.0, workers: int = 4, timeout: float = 10.0,
                 seed: int = 0):
        self.url = url
        self.inputs = inputs
        self.period = workers / rate
        self.workers = workers
        self.timeout = timeout
        self.statuses: Counter[str] = Counter()
        self.failures: list[str] = []
        self.versions: list[tuple[float, str]] = []   # (time, model_version) when the version changed
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rng = random.Random(seed)
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200")

    def served_by(self) -> dict[str, int]:
        with self._lock:
            return dict(self._seen)

    def first_time(self, version: str, after: float = 0.0) -> float | None:
        """When answers switched to `version`, first time at or after `after`."""
        with self._lock:
            return next((t for t, v in self.versions if v == version and t >= after), None)

    def last_time(self, version: str) -> float | None:
        """When answers last switched to `version` (a late answer of the old version moves it)."""
        with self._lock:
            return next((t for t, v in reversed(self.versions) if v == version), None)

    def start(self) -> LoadGenerator:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)

    def _record(self, status: str, version: str | None = None, detail: str = "") -> None:
        with self._lock:
            self.statuses[status] += 1
            if status != "200" and len(self.failures) < 20:
                self.failures.append(f"{status} {detail}"[:300])
            if version is not None:
                self._seen[version] += 1
                if not self.versions or self.versions[-1][1] != version:
                    self.versions.append((time.time(), version))

    def _run(self, worker: int) -> None:
        rng = random.Random(self._rng.random() + worker)
        with httpx.Client(timeout=self.timeout) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                body = {"inputs": [self.inputs[rng.randrange(len(self.inputs))]]}
                try:
                    r = client.post(self.url, json=body)
                    if r.status_code == 200:
                        self._record("200", r.json()["model_version"])
                    else:
                        self._record(str(r.status_code), detail=r.text)
                except httpx.HTTPError as exc:
                    self._record("transport", detail=repr(exc))
                next_at += self.period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()  # behind schedule: do not burst to catch up


@contextlib.contextmanager
def load(url: str, inputs: list, **kwargs) -> Iterator[LoadGenerator]:
    gen = LoadGenerator(url, inputs, **kwargs).start()
    try:
        yield gen
    finally:
        gen.stop()
