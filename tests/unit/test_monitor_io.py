"""The controller's edges: Alertmanager payloads, the Prometheus client, tags, events, rule re-timing."""

import socket

import pytest

from kdflow.monitoring import rules
from kdflow.monitoring.alertmanager import BadPayload, firing_alerts
from kdflow.monitoring.champion import _epoch
from kdflow.monitoring.events import event_body
from kdflow.monitoring.prom import Prometheus, PrometheusError
from tests.support.scenario import metric_sum

# Shape of a real Alertmanager v4 webhook body (as sent by prometheus-alertmanager 0.25).
PAYLOAD = {
    "receiver": "kdflow-controller", "status": "firing", "version": "4",
    "groupKey": '{}/{rollback="true"}:{alertname="KdflowTeacherAgreementLow", model_version="2"}',
    "truncatedAlerts": 0, "groupLabels": {"alertname": "KdflowTeacherAgreementLow", "model_version": "2"},
    "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
    "alerts": [
        {"status": "firing", "labels": {"alertname": "KdflowTeacherAgreementLow", "model_version": "2",
                                        "rollback": "true", "severity": "critical"},
         "annotations": {"summary": "..."}, "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prom/graph", "fingerprint": "abc"},
        {"status": "resolved", "labels": {"alertname": "KdflowHighErrorRate", "model_version": "2"},
         "annotations": {}, "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T00:05:00Z"},
    ],
}


def test_firing_alerts_from_a_v4_webhook():
    alerts = firing_alerts(PAYLOAD)
    assert [a.name for a in alerts] == ["KdflowTeacherAgreementLow"]
    assert alerts[0].labels["model_version"] == "2"


@pytest.mark.parametrize("doc", [[], {"version": "3", "alerts": []}, {"version": "4"},
                                 {"version": "4", "alerts": [{"labels": {"a": 1}}]},
                                 {"version": "4", "alerts": [{"labels": {"model_version": "2"}}]},
                                 {"version": "4", "alerts": ["x"]}])
def test_bad_webhook_payloads(doc):
    with pytest.raises(BadPayload):
        firing_alerts(doc)


def test_unreachable_prometheus_raises_a_clear_error():
    with socket.socket() as s:  # a port that is bound but not listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        prom = Prometheus(f"http://127.0.0.1:{port}", timeout_s=1)
        with pytest.raises(PrometheusError, match="cannot reach Prometheus"):
            prom.query("up")
        prom.close()


def test_promotion_time_parsing():
    assert _epoch("1700000000") == 1700000000.0
    assert _epoch("2023-11-14T22:13:20Z") == 1700000000.0
    assert _epoch("2023-11-14T22:13:20") == 1700000000.0
    assert _epoch("yesterday") is None and _epoch(None) is None


def test_event_body():
    body = event_body("ml", "kdflow-serving", "rolled back 2 -> 1", 1700000000.0)
    assert body["involvedObject"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kdflow-serving",
                                      "namespace": "ml"}
    assert body["reason"] == "ModelRolledBack" and body["lastTimestamp"] == "2023-11-14T22:13:20Z"


def test_retime_rewrites_windows_and_durations_only():
    doc = rules.load()
    fast = rules.retime(doc, "6s", "2s")
    exprs = [r["expr"] for g in fast["groups"] for r in g["rules"]]
    assert all("[5m]" not in e and "[10m]" not in e and "[15m]" not in e for e in exprs)
    assert any("[6s]" in e for e in exprs)
    assert {r.get("for") for g in fast["groups"] for r in g["rules"] if "alert" in r} == {"2s"}
    assert rules.alert_names(fast) == rules.alert_names(doc)
    assert "[5m]" in doc["groups"][0]["rules"][0]["expr"]  # the source is untouched


def test_metric_sum_reads_exposition_text():
    text = ('# TYPE kdflow_rollbacks counter\nkdflow_rollbacks_total{model_name="m",trigger="poll"} 1.0\n'
            'kdflow_rollbacks_total{model_name="m",trigger="alertmanager"} 2.0\n')
    assert metric_sum(text, "kdflow_rollbacks_total") == 3.0
    assert metric_sum(text, "kdflow_rollbacks_total", trigger="poll") == 1.0


def test_redact_keeps_scheme_host_and_aliases():
    from kdflow.redact import redact

    assert redact("http://admin:hunter2@mlflow:5000/api") == "http://***@mlflow:5000/api"
    assert redact("at postgresql://u:p@db/mlflow, ") == "at postgresql://***@db/mlflow, "
    assert redact("https://h/x?access_token=abc&x=1&sig=zz") == "https://h/x?access_token=***&x=1&sig=***"
    for same in ("sqlite:///mlflow.db", "models:/student@champion", "runs:/abc/teacher", "user@example.com"):
        assert redact(same) == same


def test_log_filter_redacts_messages_and_tracebacks():
    import io
    import logging

    from kdflow.redact import RedactingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("kdflow.test-redact")
    logger.addHandler(handler)
    try:
        logger.error("cannot reach %s", "http://u:pw-in-args@h/")
        try:
            raise RuntimeError("failed: https://u:pw-in-traceback@h/x")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "pw-in-args" not in text and "pw-in-traceback" not in text
    assert "cannot reach http://***@h/" in text and "RuntimeError: failed: https://***@h/x" in text
