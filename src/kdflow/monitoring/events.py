"""Kubernetes Events for rollbacks, so `kubectl describe deployment kdflow-serving` and
`kubectl get events` show them. Best effort, in-cluster only; the controller's Role allows
creating events and nothing else."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import httpx

log = logging.getLogger("kdflow.monitor")
SA = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def event_body(namespace: str, deployment: str, message: str, now: float, reason: str = "ModelRolledBack") -> dict:
    when = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{deployment}.kdflow-", "namespace": namespace},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "namespace": namespace},
        "reason": reason,
        "message": message[:1000],
        "type": "Warning",
        "source": {"component": "kdflow-controller"},
        "firstTimestamp": when,
        "lastTimestamp": when,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, deployment: str, sa_dir: Path = SA):
        self.deployment = deployment
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.enabled = bool(host) and (sa_dir / "token").is_file()
        if not self.enabled:
            log.warning("--k8s-events: not running in a cluster (no service account token); events are off")
            return
        self.namespace = (sa_dir / "namespace").read_text().strip()
        self._url = f"https://{host}:{port}/api/v1/namespaces/{self.namespace}/events"
        self._token = sa_dir / "token"  # re-read per call: projected tokens rotate
        self._verify = str(sa_dir / "ca.crt")

    def emit(self, message: str, now: float) -> None:
        if not self.enabled:
            return
        try:
            r = httpx.post(self._url, json=event_body(self.namespace, self.deployment, message, now), timeout=5.0,
                           headers={"Authorization": f"Bearer {self._token.read_text().strip()}"}, verify=self._verify)
            r.raise_for_status()
        except (httpx.HTTPError, OSError) as exc:
            log.warning("could not record a Kubernetes event: %s", exc)
