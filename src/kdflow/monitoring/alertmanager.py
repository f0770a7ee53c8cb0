"""Alertmanager webhook payloads (version 4) → firing alerts."""

from __future__ import annotations

from typing import Any

from kdflow.monitoring.decision import Alert


class BadPayload(ValueError):
    pass


def firing_alerts(doc: Any) -> list[Alert]:
    """The firing alerts of an Alertmanager v4 webhook body; resolved ones are ignored."""
    if not isinstance(doc, dict):
        raise BadPayload("payload must be a JSON object (Alertmanager webhook, version 4)")
    if str(doc.get("version")) != "4":
        raise BadPayload(f"unsupported webhook version {doc.get('version')!r}; expected \"4\"")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise BadPayload("'alerts' must be a list")
    out = []
    for i, a in enumerate(alerts):
        labels = a.get("labels") if isinstance(a, dict) else None
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise BadPayload(f"alerts[{i}].labels must be an object of strings")
        if "alertname" not in labels:
            raise BadPayload(f"alerts[{i}] has no alertname label")
        if a.get("status", "firing") == "firing":
            out.append(Alert(labels["alertname"], dict(labels)))
    return out
