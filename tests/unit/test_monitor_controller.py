"""The controller process's HTTP side in-process: webhook validation, /metrics, /status, and that an
unreachable Prometheus is reported as inconclusive — against a real (empty) sqlite MLflow store and a
closed local port, nothing faked."""

import os
import socket
import time

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from kdflow.monitoring.controller import Controller, MonitorConfig, create_app, main
from kdflow.monitoring.decision import Evidence
from kdflow.monitoring.prom import PrometheusError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples(text: str, name: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


def test_controller_http(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = MonitorConfig(model_name="nothing-registered", prometheus_url=f"http://127.0.0.1:{closed_port()}",
                        interval_s=0.2, query_timeout_s=1, token="s3cret")
    app = create_app(cfg)
    with TestClient(app, headers={"authorization": "Bearer s3cret"}) as c:
        assert c.get("/healthz").status_code == 200
        assert c.post("/alertmanager", content=b"not json", headers={"content-type": "application/json"}
                      ).status_code == 400
        r = c.post("/alertmanager", json={"version": "3", "alerts": []})
        assert r.status_code == 400 and "version" in r.json()["error"]
        r = c.post("/alertmanager", json={"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "KdflowHighErrorRate", "model_version": "1",
                                            "rollback": "true"}}]})
        assert r.status_code == 200 and r.json()["action"] == "none" and "no champion" in r.json()["reason"]
        assert c.post("/alertmanager", json={"version": "4", "alerts": []},
                      headers={"authorization": "Bearer wrong"}).status_code == 401
        deadline = time.monotonic() + 30
        while app.state.controller.last is None or app.state.controller.last.reason != "no champion alias set":
            assert time.monotonic() < deadline, "the poll loop never ran"
            time.sleep(0.1)
        status = c.get("/status").json()
        assert status["model_name"] == "nothing-registered" and status["champion"] is None
        checks = samples(c.get("/metrics").text, "kdflow_controller_checks_total")
        assert checks[(("model_name", "nothing-registered"), ("outcome", "none"), ("trigger", "alertmanager"))] == 1
        assert checks[(("model_name", "nothing-registered"), ("outcome", "none"), ("trigger", "poll"))] >= 1



def test_unreachable_prometheus_is_inconclusive_and_counted():
    cfg = MonitorConfig(model_name="m", prometheus_url=f"http://127.0.0.1:{closed_port()}", query_timeout_s=1)
    controller = Controller(cfg)  # not started: no poll thread, evidence fed by the test
    try:
        controller.prometheus.query("up")
    except PrometheusError as exc:
        error = str(exc)
    assert controller._act(Evidence("3", "2")).action == "none"  # first sight of v3: watched from now
    d = controller._act(Evidence("3", "2", prometheus_error=error))
    assert d.action == "inconclusive" and d.cause == "prometheus_unreachable" and "cannot reach" in d.reason
    inconclusive = samples(controller.metrics.render().decode(), "kdflow_controller_inconclusive_total")
    assert inconclusive[(("cause", "prometheus_unreachable"), ("model_name", "m"))] == 1
    controller.stop()


def test_cli_validation(capsys, monkeypatch):
    monkeypatch.delenv("KDFLOW_WEBHOOK_TOKEN", raising=False)
    assert main(["--model-name", "m", "--interval", "0"]) == 2
    assert "--interval must be > 0" in capsys.readouterr().err
    assert main(["--model-name", "m"]) == 2
    assert "KDFLOW_WEBHOOK_TOKEN is not set" in capsys.readouterr().err
    assert main(["--help"]) == 0
