"""The model server as an attacker and an unlucky operator meet it: real uvicorn on 127.0.0.1 with the
production limits, a real sqlite MLflow store written the way someone with registry access could."""

import json
import socket
import time

import httpx
import pytest

from kdflow import tracking
from kdflow.errors import KdflowError
from kdflow.serving.app import create_app
from kdflow.serving.config import ServeConfig
from kdflow.serving.limits import HttpLimits
from kdflow.serving.trust import check_spec, check_uri
from tests.support.live import model_dir, register_dir, serve

pytestmark = pytest.mark.integration
X = {"inputs": [[[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]]}


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def metric(base: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(base + "/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_registry_cannot_run_code_or_point_at_local_files(tmp_path):
    marker = tmp_path / "PWNED"
    evil = register_dir("sec-evil", model_dir(tmp_path / "evil", name="import:subprocess:Popen",
                                              kwargs={"args": ["touch", str(marker)]}))
    teacher = model_dir(tmp_path / "teacher")
    good = register_dir("sec-evil", model_dir(tmp_path / "good"), {tracking.TEACHER_TAG: str(teacher)})
    tracking.client().set_registered_model_alias("sec-evil", "champion", evil)
    app = create_app(ServeConfig(model="models:/sec-evil@champion", alias_poll_s=0.2, jit=False, shadow_rate=1.0))
    with serve(app) as base:
        wait_for(lambda: metric(base, "kdflow_model_loads_total", result="error") >= 1, what="the refused load")
        r = httpx.get(base + "/readyz")
        assert r.status_code == 503 and not marker.exists()  # refused before anything was imported or run
        tracking.client().set_registered_model_alias("sec-evil", "champion", good)
        ready = wait_for(lambda: (r := httpx.get(base + "/readyz")).status_code == 200 and r.json(), what="v2")
        assert ready["model_version"] == good and ready["teacher"] is None  # the local teacher dir was refused
        assert httpx.post(base + "/predict", json=X).status_code == 200
    assert not marker.exists()


def test_allow_lists(monkeypatch, tmp_path):
    with pytest.raises(KdflowError, match="not on the operator's allow-list"):
        check_spec({"name": "import:os:system"}, "v1")
    monkeypatch.setenv("KDFLOW_ALLOWED_IMPORTS", "mypkg, other")
    check_spec({"name": "import:mypkg.nets:Net"}, "v1")
    with pytest.raises(KdflowError):
        check_spec({"name": "import:mypkgevil:Net"}, "v1")
    check_uri("runs:/abc/teacher", "teacher")
    for bad in ("/etc", "file:///etc", "s3://bucket/x", "http://h/x"):
        with pytest.raises(KdflowError, match="refusing"):
            check_uri(bad, "teacher")
    monkeypatch.setenv("KDFLOW_ALLOWED_LOCAL_ROOTS", str(tmp_path))
    check_uri(str(tmp_path / "teacher"), "teacher")
    with pytest.raises(KdflowError):
        check_uri(str(tmp_path / ".." / "elsewhere"), "teacher")


def test_incompatible_swap_is_refused_counted_and_the_old_version_keeps_serving(tmp_path):
    name = "sec-swap"
    v1 = register_dir(name, model_dir(tmp_path / "v1"))
    wide = register_dir(name, model_dir(tmp_path / "wide", length=8))      # another input shape
    more = register_dir(name, model_dir(tmp_path / "more", classes=4))     # another class list
    v4 = register_dir(name, model_dir(tmp_path / "v4", seed=4))            # compatible
    c = tracking.client()
    c.set_registered_model_alias(name, "champion", v1)
    app = create_app(ServeConfig(model=f"models:/{name}@champion", alias_poll_s=0.2, jit=False))
    with serve(app, ready="/healthz") as base:
        wait_for(lambda: httpx.get(base + "/readyz").status_code == 200, what="v1")
        for bad, reason in ((wide, "input_shape"), (more, "output_size")):
            c.set_registered_model_alias(name, "champion", bad)
            wait_for(lambda bad=bad: metric(base, "kdflow_swap_refused", model_version=bad) == 1, what="refusal")
            assert metric(base, "kdflow_swap_refusals_total", model_version=bad, reason=reason) == 1
            r = httpx.post(base + "/predict", json=X)
            assert r.status_code == 200 and r.json()["model_version"] == v1
        c.set_registered_model_alias(name, "champion", v4)
        wait_for(lambda: httpx.post(base + "/predict", json=X).json()["model_version"] == v4, what="v4")
        assert metric(base, "kdflow_swap_refused") == 0  # the alert clears once the alias moves on


def test_deleted_served_version_makes_the_server_unready(tmp_path):
    name = "sec-gone"
    v1 = register_dir(name, model_dir(tmp_path / "v1"))
    app = create_app(ServeConfig(model=f"models:/{name}/{v1}", alias_poll_s=0.2, jit=False))
    with serve(app) as base:
        wait_for(lambda: httpx.get(base + "/readyz").status_code == 200, what="v1")
        tracking.client().delete_model_version(name, v1)
        r = wait_for(lambda: (r := httpx.get(base + "/readyz")).status_code == 503 and r, what="unready")
        assert "not in the registry" in r.json()["reason"]
        assert httpx.post(base + "/predict", json=X).status_code == 200  # still answers the requests it gets


def _slow_client(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    return s


def test_slow_clients_are_cut_off_and_do_not_hold_the_server(tmp_path):
    limits = HttpLimits(header_timeout_s=1.5, body_timeout_s=1.0)
    app = create_app(ServeConfig(model=str(model_dir(tmp_path / "m")), jit=False, limits=limits))
    with serve(app, limits) as base:
        port = int(base.rsplit(":", 1)[1])
        slow = [_slow_client(port) for _ in range(300)]
        try:
            started = time.monotonic()
            r = httpx.post(base + "/predict", json=X, timeout=5)
            assert r.status_code == 200 and time.monotonic() - started < 1.0
            # a body that stalls: 408 once the body deadline passes
            stalled = socket.create_connection(("127.0.0.1", port))
            stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                            b"content-length: 100\r\n\r\n{\"inputs\": ")
            stalled.settimeout(5)
            assert stalled.recv(200).startswith(b"HTTP/1.1 408")
            stalled.close()
            for s in slow:  # the header deadline closes every slow connection
                s.settimeout(5)
                assert s.recv(200).startswith(b"HTTP/1.1 408")
        finally:
            for s in slow:
                s.close()
        big = socket.create_connection(("127.0.0.1", port))
        big.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n")
        big.settimeout(5)
        assert big.recv(200).startswith(b"HTTP/1.1 431")
        big.close()
        assert httpx.get(base + "/healthz").status_code == 200


def test_deep_json_and_non_json_are_4xx(tmp_path):
    app = create_app(ServeConfig(model=str(model_dir(tmp_path / "m")), jit=False))
    with serve(app) as base:
        for path in ("/predict", "/feedback"):
            deep = httpx.post(base + path, content=b"[" * 20_000, headers={"content-type": "application/json"})
            assert deep.status_code == 400 and "not valid JSON" in deep.json()["error"]
        r = httpx.post(base + "/predict", content=json.dumps(X), headers={"content-type": "text/plain"})
        assert r.status_code == 415
