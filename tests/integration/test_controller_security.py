"""The rollback controller's webhook as an attacker and an unlucky operator meet it: real uvicorn on
127.0.0.1 with the production limits (or the real `kdflow monitor` process), a real sqlite MLflow store."""

import socket
import sys
import time

import httpx
import pytest

from kdflow import tracking
from kdflow.monitoring.controller import MonitorConfig, create_app
from tests.support.harness import LOCAL, Processes, child_env, free_port, wait_http
from tests.support.live import model_dir, register_dir, serve

pytestmark = pytest.mark.integration
TOKEN = "t0ken-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def firing(version: str, model: str = "sec-ctl") -> dict:
    return {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "KdflowHighErrorRate", "model_name": model,
                                        "model_version": version, "rollback": "true"}}]}


def controller_app(name: str, **cfg):
    # Prometheus on a closed port: the poll loop stays inconclusive, only the webhook acts
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        closed = s.getsockname()[1]
    return create_app(MonitorConfig(model_name=name, prometheus_url=f"http://{LOCAL}:{closed}", interval_s=30,
                                    query_timeout_s=1, token=TOKEN, **cfg))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """v1 good, v2 deleted, v3 corrupt weights, v4 the bad champion whose previous champion was v2."""
    tmp = tmp_path_factory.mktemp("ctl")
    name = "sec-ctl"
    v1 = register_dir(name, model_dir(tmp / "v1"))
    v2 = register_dir(name, model_dir(tmp / "v2"))
    corrupt = model_dir(tmp / "v3")
    (corrupt / "model.pt").write_bytes(b"not a state dict")
    v3 = register_dir(name, corrupt)
    v4 = register_dir(name, model_dir(tmp / "v4"), {tracking.PREVIOUS_TAG: v2})
    tracking.client().delete_model_version(name, v2)
    tracking.client().set_registered_model_alias(name, tracking.CHAMPION, v4)
    return name, v1, v2, v3, v4


def test_webhook_refuses_forged_or_malformed_requests_and_holds_memory(store):
    name, _, _, _, v4 = store
    with serve(controller_app(name)) as base:
        url = base + "/alertmanager"
        r = httpx.post(url, json=firing(v4))  # forged: no token
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert httpx.post(url, json=firing(v4), headers={"authorization": "Bearer guess"}).status_code == 401
        assert tracking.resolve_alias(name, tracking.CHAMPION) == v4  # the alias did not move
        r = httpx.post(url, content=b'{"version": "4", "alerts": []}', headers={**AUTH, "content-type": "text/plain"})
        assert r.status_code == 415
        r = httpx.post(url, content=b"[" * 100_000, headers={**AUTH, "content-type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]

        def body():  # 200 MB, streamed (chunked): the limit must cut it off, not buffer it
            chunk = b" " * (1 << 20)
            for _ in range(200):
                yield chunk

        before, started = rss_mib(), time.monotonic()
        try:
            r = httpx.post(url, content=body(), headers={**AUTH, "content-type": "application/json"}, timeout=30)
            assert r.status_code == 413
        except httpx.WriteError:  # the server answered 413 and closed while the client was still sending
            pass
        assert time.monotonic() - started < 5
        assert rss_mib() - before < 50, "the body was buffered"
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection((LOCAL, port), timeout=5) as s:  # declared 200 MB: refused before reading
            s.sendall(f"POST /alertmanager HTTP/1.1\r\nHost: x\r\nauthorization: Bearer {TOKEN}\r\n"
                      f"content-type: application/json\r\ncontent-length: {200 << 20}\r\n\r\n{{".encode())
            assert s.recv(100).startswith(b"HTTP/1.1 413")


def test_rollback_skips_deleted_and_corrupt_targets_and_watches_the_restored_one(store):
    name, v1, v2, v3, v4 = store
    app = controller_app(name)
    with serve(app) as base:
        other = firing("999")  # alerts about another version only: no evidence either way
        d = httpx.post(base + "/alertmanager", json=other, headers=AUTH).json()
        assert d["action"] == "inconclusive" and d["cause"] == "no_evidence"
        # the champion's version number, but another model's alert (issue 25): not evidence either
        d = httpx.post(base + "/alertmanager", json=firing(v4, "another-model"), headers=AUTH).json()
        assert d["action"] == "inconclusive" and tracking.resolve_alias(name, tracking.CHAMPION) == v4, d
        d = httpx.post(base + "/alertmanager", json=firing(v4), headers=AUTH, timeout=60).json()
        assert d["action"] == "rollback" and d["target"] == v1, d
        assert f"v{v2}: not in the registry" in d["reason"] and f"v{v3}: corrupt" in d["reason"]
        assert tracking.resolve_alias(name, tracking.CHAMPION) == v1
        status = httpx.get(base + "/status").json()
        assert status["champion"] == v1 and status["watch_from"] is not None  # still watched
        # the restored version breaks too, with nothing older to go to: stop and count a failure
        d = httpx.post(base + "/alertmanager", json=firing(v1), headers=AUTH).json()
        assert d["action"] == "blocked", d
    tracking.client().set_registered_model_alias(name, tracking.CHAMPION, v4)


def test_no_target_that_serves_stops_and_counts_a_failure(store):
    name, _, v2, v3, v4 = store
    assert tracking.resolve_alias(name, tracking.CHAMPION) == v4
    with serve(controller_app(name, rollback_candidates=2)) as base:  # only v2 (deleted) and v3 (corrupt)
        d = httpx.post(base + "/alertmanager", json=firing(v4), headers=AUTH, timeout=60).json()
        assert d["action"] == "blocked" and "no rollback target can serve" in d["reason"], d
        assert tracking.resolve_alias(name, tracking.CHAMPION) == v4  # stopped: nothing moved
        text = httpx.get(base + "/metrics").text
        assert f'kdflow_rollback_failures_total{{model_name="{name}"}} 1.0' in text
        again = httpx.post(base + "/alertmanager", json=firing(v4), headers=AUTH).json()
        assert again["action"] == "none" and "already handled" in again["reason"]  # stops trying


def test_no_credentials_in_status_or_logs_and_unreachable_mlflow_is_named(tmp_path):
    """Both real processes against a tracking server URI with a password that is not listening."""
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        dead = s.getsockname()[1]
    secret = "hunter2-secret"
    uri = f"http://admin:{secret}@{LOCAL}:{dead}"
    env = child_env(MLFLOW_TRACKING_URI=uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="2",
                    KDFLOW_WEBHOOK_TOKEN=TOKEN)
    cport, sport = free_port(), free_port()
    with Processes(tmp_path) as procs:
        ctl = procs.start("controller", [sys.executable, "-m", "kdflow.monitoring.controller", "--model-name", "m",
                                         "--host", LOCAL, "--port", str(cport), "--interval", "1",
                                         "--prometheus-url", f"http://prom:{secret}@{LOCAL}:{dead}"], env)
        srv = procs.start("server", [sys.executable, "-m", "kdflow.serving.app", "--model", "models:/m@champion",
                                     "--host", LOCAL, "--port", str(sport), "--alias-poll", "1"], env)
        base = f"http://{LOCAL}:{cport}"
        wait_http(base + "/healthz", ctl, 90)
        started = time.monotonic()
        d = httpx.post(base + "/alertmanager", json=firing("3"), headers=AUTH, timeout=30).json()
        assert time.monotonic() - started < 15
        assert d["action"] == "inconclusive" and d["cause"] == "registry_unreachable", d
        status = httpx.get(base + "/status").text
        assert "MLflow registry unreachable" in status and "***@" in status
        wait_http(f"http://{LOCAL}:{sport}/healthz", srv, 90)
        deadline = time.monotonic() + 30
        while "unreachable" not in srv.tail(200) and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = httpx.get(f"http://{LOCAL}:{sport}/readyz")
        assert ready.status_code == 503
        assert secret not in status
    logs = ctl.log_path.read_text() + srv.log_path.read_text()
    assert "unreachable" in srv.log_path.read_text() and "not set" not in srv.log_path.read_text()
    assert secret not in logs, [line for line in logs.splitlines() if secret in line][:3]

