"""The rollback controller (`kdflow monitor`).

Every `--interval` seconds it reads the champion from MLflow and the firing alerts from Prometheus,
and lets `decision.decide` judge; an Alertmanager webhook (POST /alertmanager) feeds the same
judgement. A rollback moves the `champion` alias back (the servers hot-swap on their own),
tags the bad version, and counts `kdflow_rollbacks_total`. It serves /metrics, /healthz, /status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kdflow.monitoring import registry
from kdflow.monitoring.alertmanager import BadPayload, firing_alerts
from kdflow.monitoring.decision import Alert, Decision, Evidence, Policy, State, after, decide, observe
from kdflow.monitoring.events import EventRecorder
from kdflow.monitoring.metrics import ControllerMetrics
from kdflow.monitoring.prom import Prometheus, PrometheusError

log = logging.getLogger("kdflow.monitor")
FIRING = 'ALERTS{alertstate="firing"}'


@dataclass(frozen=True)
class MonitorConfig:
    model_name: str
    prometheus_url: str = "http://127.0.0.1:9090"
    interval_s: float = 15.0
    watch_window_s: float = 3600.0
    cooldown_s: float = 600.0
    dry_run: bool = False
    host: str = "127.0.0.1"
    port: int = 9100
    data_query: str = "model_version:kdflow_requests:rate"
    query_timeout_s: float = 5.0
    k8s_events: str | None = None   # deployment to attach rollback events to
    log_level: str = "info"

    def policy(self) -> Policy:
        return Policy(self.watch_window_s, self.cooldown_s, self.dry_run)


class Controller:
    def __init__(self, cfg: MonitorConfig, clock=time.time):
        self.cfg = cfg
        self.policy = cfg.policy()
        self.prometheus = Prometheus(cfg.prometheus_url, cfg.query_timeout_s)
        self.metrics = ControllerMetrics(cfg.model_name)
        self.events = EventRecorder(cfg.k8s_events) if cfg.k8s_events else None
        self.state = State()
        self.last: Decision | None = None
        self._logged_key: tuple | None = None
        self._logged_at = 0.0
        self._clock = clock
        self._lock = threading.Lock()  # poll loop and webhook: one decision at a time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kdflow-monitor", daemon=True)

    # -- evidence ------------------------------------------------------------------------------
    def _registry(self) -> tuple[str | None, str | None, float | None]:
        return registry.champion(self.cfg.model_name)

    def gather(self) -> Evidence:
        champion, previous, promoted_at = self._registry()
        try:
            alerts = tuple(Alert(labels.get("alertname", ""), labels) for labels, _ in self.prometheus.query(FIRING))
            traffic = self.prometheus.query(self.cfg.data_query)
        except PrometheusError as exc:
            return Evidence(champion, previous, promoted_at, prometheus_error=str(exc))
        has_data = any(labels.get("model_version") == champion and value > 0 for labels, value in traffic)
        return Evidence(champion, previous, promoted_at, alerts, has_data=has_data)

    # -- judgement + action ---------------------------------------------------------------------
    def check(self) -> Decision:
        with self._lock:
            try:
                ev = self.gather()
            except Exception as exc:  # MLflow unreachable: nothing can be judged or moved
                return self._record(Decision("inconclusive", f"cannot read the registry: {exc}",
                                             cause="registry_unreachable"), "poll")
            return self._act(ev)

    def webhook(self, alerts: list[Alert]) -> Decision:
        with self._lock:
            champion, previous, promoted_at = self._registry()
            return self._act(Evidence(champion, previous, promoted_at, tuple(alerts), trigger="alertmanager"))

    def _act(self, ev: Evidence) -> Decision:
        now = self._clock()
        self.state = observe(self.state, ev, now)
        d = decide(self.state, ev, now, self.policy)
        if d.action == "rollback":
            try:
                moved = registry.rollback(self.cfg.model_name, d.version, d.target, d.reason, now)
            except Exception as exc:
                self.metrics.failures.labels(self.cfg.model_name).inc()
                log.exception("ROLLBACK FAILED for %s version %s", self.cfg.model_name, d.version)
                return self._record(Decision("error", f"rollback failed: {exc}", d.version, d.target, d.alerts),
                                    ev.trigger)
            self.state = after(self.state, d, now)
            if moved:
                self.metrics.rollbacks.labels(self.cfg.model_name, ev.trigger).inc()
                message = f"{self.cfg.model_name}: champion rolled back {d.version} -> {d.target} ({d.reason})"
                if self.events is not None:
                    self.events.emit(message, now)
            else:
                d = Decision("none", f"champion had already moved off version {d.version}", d.version)
        elif d.action == "dry_run":
            self.state = after(self.state, d, now)
            self.metrics.dry_runs.labels(self.cfg.model_name, ev.trigger).inc()
        return self._record(d, ev.trigger)

    def _record(self, d: Decision, trigger: str) -> Decision:
        name = self.cfg.model_name
        self.metrics.checks.labels(name, trigger, d.action).inc()
        self.metrics.last_check.labels(name).set_to_current_time()
        self.metrics.watching.clear()
        s = self.state
        if s.champion is not None:
            watched = (s.watch_from is not None and s.champion not in s.handled
                       and self._clock() - s.watch_from <= self.policy.watch_window_s)
            self.metrics.watching.labels(name, s.champion).set(1 if watched else 0)
        if d.action == "inconclusive":
            self.metrics.inconclusive.labels(name, d.cause or "unknown").inc()
            if self._repeat(d):
                log.warning("INCONCLUSIVE (%s): %s — no rollback decision possible", d.cause, d.reason)
        elif d.action == "rollback":
            log.warning("ROLLED BACK %s: champion %s -> %s because %s (trigger: %s)", name, d.version, d.target,
                        d.reason, trigger)
        elif d.action == "dry_run":
            log.warning("DRY RUN: would roll back %s version %s -> %s because %s", name, d.version, d.target, d.reason)
        elif d.action in ("blocked", "error"):
            log.error("%s: %s", d.action.upper(), d.reason)
        elif self._repeat(d):
            log.info("%s", d.reason)
        self.last = d
        return d

    def _repeat(self, d: Decision) -> bool:
        """Log a steady state when it changes, and once a minute while it lasts."""
        key = (d.action, d.cause, d.version)
        now = time.monotonic()
        if key != self._logged_key or now - self._logged_at >= 60:
            self._logged_key, self._logged_at = key, now
            return True
        return False

    # -- loop -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.prometheus.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:
                log.exception("check failed")
                self.metrics.checks.labels(self.cfg.model_name, "poll", "error").inc()
            self._stop.wait(self.cfg.interval_s)


def create_app(cfg: MonitorConfig) -> Starlette:
    controller = Controller(cfg)

    async def alertmanager(request: Request) -> Response:
        try:
            alerts = firing_alerts(json.loads(await request.body()))
        except (ValueError, BadPayload) as exc:  # JSONDecodeError is a ValueError
            return JSONResponse({"error": f"bad Alertmanager payload: {exc}", "status": 400}, 400)
        d = await anyio.to_thread.run_sync(controller.webhook, alerts)  # MLflow calls block
        return JSONResponse(asdict(d))

    async def metrics(request: Request) -> Response:
        return Response(controller.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def status(request: Request) -> Response:
        s = controller.state
        return JSONResponse({"model_name": cfg.model_name, "champion": s.champion, "watch_from": s.watch_from,
                             "last_rollback_at": s.last_rollback_at, "handled": sorted(s.handled),
                             "last_decision": asdict(controller.last) if controller.last else None})

    @asynccontextmanager
    async def lifespan(app: Starlette):
        controller.start()
        try:
            yield
        finally:
            controller.stop()

    app = Starlette(routes=[Route("/alertmanager", alertmanager, methods=["POST"]),
                            Route("/metrics", metrics), Route("/healthz", healthz), Route("/status", status)],
                    lifespan=lifespan)
    app.state.controller = controller
    return app


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdflow monitor", description="Roll back a bad champion automatically.")
    p.add_argument("--model-name", default=os.environ.get("KDFLOW_MODEL_NAME"),
                   required="KDFLOW_MODEL_NAME" not in os.environ, help="registered model to watch")
    p.add_argument("--prometheus-url", default=os.environ.get("KDFLOW_PROMETHEUS_URL", "http://127.0.0.1:9090"))
    p.add_argument("--interval", dest="interval_s", type=float, default=15.0, help="seconds between checks")
    p.add_argument("--watch-window", dest="watch_window_s", type=float, default=3600.0,
                   help="seconds after a promotion during which a breach rolls back")
    p.add_argument("--cooldown", dest="cooldown_s", type=float, default=600.0,
                   help="minimum seconds between two rollbacks")
    p.add_argument("--dry-run", action="store_true", help="report rollbacks, do not move the alias")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--data-query", default="model_version:kdflow_requests:rate",
                   help="PromQL giving a positive value per model_version that has live traffic")
    p.add_argument("--query-timeout", dest="query_timeout_s", type=float, default=5.0)
    p.add_argument("--k8s-events", metavar="DEPLOYMENT", help="record rollbacks as Kubernetes Events on DEPLOYMENT")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str] | None = None) -> int:
    """`kdflow monitor ...`: returns the process exit code."""
    try:
        args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    cfg = MonitorConfig(**vars(args))
    for name, value in (("--interval", cfg.interval_s), ("--query-timeout", cfg.query_timeout_s)):
        if value <= 0:
            print(f"kdflow monitor: {name} must be > 0, got {value}", file=sys.stderr)
            return 2
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import prometheus_client
    import uvicorn

    prometheus_client.disable_created_metrics()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prometheus query otherwise
    log.info("watching %s via %s every %.0fs (window %.0fs, cooldown %.0fs%s)", cfg.model_name, cfg.prometheus_url,
             cfg.interval_s, cfg.watch_window_s, cfg.cooldown_s, ", DRY RUN" if cfg.dry_run else "")
    try:
        uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port, log_level=cfg.log_level, access_log=False)
    except SystemExit as exc:
        return int(exc.code or 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
