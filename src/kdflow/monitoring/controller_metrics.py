"""The controller's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class ControllerMetrics:
    def __init__(self, model_name: str):
        self.registry = r = CollectorRegistry()
        self.model_name = model_name
        self.rollbacks = Counter("kdflow_rollbacks", "Champion rollbacks performed", ["model_name", "trigger"],
                                 registry=r)
        self.dry_runs = Counter("kdflow_rollback_dry_runs", "Rollbacks that --dry-run only reported",
                                ["model_name", "trigger"], registry=r)
        self.failures = Counter("kdflow_rollback_failures", "Rollbacks that failed to move the alias",
                                ["model_name"], registry=r)
        self.checks = Counter("kdflow_controller_checks", "Checks by outcome (rollback, dry_run, none, "
                              "inconclusive, blocked, error)", ["model_name", "trigger", "outcome"], registry=r)
        self.inconclusive = Counter("kdflow_controller_inconclusive", "Checks that could not judge the champion",
                                    ["model_name", "cause"], registry=r)
        self.last_check = Gauge("kdflow_controller_last_check_timestamp_seconds", "Time of the last check",
                                ["model_name"], registry=r)
        self.watching = Gauge("kdflow_controller_watching", "1 while the champion is inside its watch window",
                              ["model_name", "model_version"], registry=r)
        for outcome in ("rollback", "none", "inconclusive", "blocked", "error"):
            self.checks.labels(model_name, "poll", outcome)
        self.rollbacks.labels(model_name, "poll")
        self.failures.labels(model_name)  # a 0 sample first: increase() then sees the first failure (the alert)
        self.rollbacks.labels(model_name, "alertmanager")

    def render(self) -> bytes:
        return generate_latest(self.registry)
