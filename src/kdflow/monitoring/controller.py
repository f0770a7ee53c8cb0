"""The rollback controller (`kdflow monitor`).

Every `--interval` seconds it reads the champion from MLflow and the firing alerts from Prometheus,
and lets `decision.decide` judge; an Alertmanager webhook (POST /alertmanager) feeds the same
judgement. A rollback moves the `champion` alias back to a version that exists, loads and passes a
smoke prediction (the servers hot-swap on their own), tags the bad version, and counts
`kdflow_rollbacks_total`. It serves /metrics, /healthz, /status.

The webhook wants `Authorization: Bearer <token>` (env KDFLOW_WEBHOOK_TOKEN, from a Kubernetes
Secret; Alertmanager's receiver carries the same Secret), a JSON body of at most --max-body-bytes,
and answers 401 / 415 / 413 / 400 otherwise. Without a token the controller refuses to start unless
--insecure-no-auth is given (local development).
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import logging
import os
import sys
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kdflow import tracking
from kdflow.monitoring import champion
from kdflow.monitoring.alertmanager import BadPayload, firing_alerts
from kdflow.monitoring.controller_metrics import ControllerMetrics
from kdflow.monitoring.decision import Alert, Decision, Evidence, Policy, State, after, decide, observe
from kdflow.monitoring.events import EventRecorder
from kdflow.monitoring.prom import Prometheus, PrometheusError
from kdflow.redact import install_log_filter, redact
from kdflow.serving.config import add_limit_args, split_limits
from kdflow.serving.limits import HttpLimits, run_uvicorn, uvicorn_config
from kdflow.serving.validation import BadRequest, check_content_type, parse_json, read_body
from kdflow.tracking import RegistryUnavailable

log = logging.getLogger("kdflow.monitor")
FIRING = 'ALERTS{alertstate="firing"}'
TOKEN_ENV = "KDFLOW_WEBHOOK_TOKEN"


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
    token: str | None = field(default=None, repr=False)  # bearer token the webhook requires
    auth: bool = True                # False only with --insecure-no-auth
    max_body_bytes: int = 1 << 20    # an Alertmanager message with hundreds of alerts is ~100 KiB
    rollback_candidates: int = 3     # rollback targets tried (each downloaded and smoke-tested)
    namespace: str | None = None     # alerts must carry this namespace label too (a cluster's controller)
    limits: HttpLimits = field(default_factory=HttpLimits)

    def policy(self) -> Policy:
        return Policy(self.watch_window_s, self.cooldown_s, self.dry_run, model_name=self.model_name,
                      namespace=self.namespace)


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
        self._lock = threading.Lock()  # poll loop and webhook: one decision at a time (never held over a read)
        self._moves = 0                # rollbacks so far: evidence read before one is stale
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kdflow-monitor", daemon=True)

    # -- evidence ------------------------------------------------------------------------------
    def _registry(self) -> tuple[str | None, str | None, float | None]:
        return champion.current(self.cfg.model_name)

    def gather(self) -> Evidence:
        champion, previous, promoted_at = self._registry()
        try:
            alerts = tuple(Alert(labels.get("alertname", ""), labels) for labels, _ in self.prometheus.query(FIRING))
            traffic = self.prometheus.query(self.cfg.data_query)
        except PrometheusError as exc:
            return Evidence(champion, previous, promoted_at, prometheus_error=str(exc))
        name = self.cfg.model_name
        has_data = any(labels.get("model_version") == champion and labels.get("model_name", name) == name
                       and value > 0 for labels, value in traffic)
        return Evidence(champion, previous, promoted_at, alerts, has_data=has_data)

    # -- judgement + action ---------------------------------------------------------------------
    def check(self) -> Decision:
        return self._judge(self.gather, "poll")

    def webhook(self, alerts: list[Alert]) -> Decision:
        def evidence() -> Evidence:  # alerts only: no evidence of health (has_data unknown)
            champion_, previous, promoted_at = self._registry()
            return Evidence(champion_, previous, promoted_at, tuple(alerts), has_data=None, trigger="alertmanager")
        return self._judge(evidence, "alertmanager")

    def _judge(self, gather, trigger: str) -> Decision:
        """Read the evidence without the lock (MLflow or Prometheus may be slow or down), then decide and act
        under it; evidence read across another thread's rollback is stale and is not acted on."""
        moves = self._moves
        try:
            ev = gather()
        except Exception as exc:  # MLflow unreachable: nothing can be judged or moved
            with self._lock:
                return self._record(Decision("inconclusive", f"MLflow registry unreachable: "
                                             f"{str(exc).splitlines()[0][:300] if str(exc) else repr(exc)}",
                                             cause="registry_unreachable"), trigger)
        with self._lock:
            if moves != self._moves:
                return self._record(Decision("none", "the champion was rolled back while this check read the "
                                             "registry; the next check judges", ev.champion), trigger)
            return self._act(ev)

    def _act(self, ev: Evidence) -> Decision:
        now = self._clock()
        self.state = observe(self.state, ev, now)
        d = decide(self.state, ev, now, self.policy)
        if d.action == "rollback":
            try:
                target, skipped = champion.pick_target(self.cfg.model_name, d.version, d.target,
                                                       self.cfg.rollback_candidates)
                if target is None:  # stop: alert (KdflowRollbackFailed) and leave it to a person
                    self.metrics.failures.labels(self.cfg.model_name).inc()
                    self.state = replace(self.state, handled=self.state.handled | {d.version})
                    return self._record(Decision(
                        "blocked", f"{d.reason} firing for version {d.version} but no rollback target can serve: "
                        f"{'; '.join(skipped) or 'no older version'}; NOT rolled back", d.version, None, d.alerts),
                        ev.trigger)
                reason = d.reason + (f" (skipped {'; '.join(skipped)})" if skipped else "")
                d = replace(d, target=target, reason=reason)
                moved = champion.rollback(self.cfg.model_name, d.version, target, reason, now)
            except Exception as exc:  # nothing was decided: not handled, no cooldown; the next check tries again
                self.metrics.failures.labels(self.cfg.model_name).inc()
                if not isinstance(exc, RegistryUnavailable):  # that one is said in full by _record's line
                    log.exception("ROLLBACK FAILED for %s version %s", self.cfg.model_name, d.version)
                first = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
                return self._record(Decision("error", f"rollback of version {d.version} failed, retried at the "
                                             f"next check: {first}", d.version, d.target, d.alerts), ev.trigger)
            if not moved:  # the registry answered that the alias is elsewhere: follow it at the next check
                return self._record(Decision("none", f"champion had already moved off version {d.version}",
                                             d.version), ev.trigger)
            self.state = after(self.state, d, now)
            self._moves += 1
            self.metrics.rollbacks.labels(self.cfg.model_name, ev.trigger).inc()
            message = f"{self.cfg.model_name}: champion rolled back {d.version} -> {d.target} ({d.reason})"
            if self.events is not None:
                self.events.emit(message, now)
        elif d.action == "dry_run":
            self.state = after(self.state, d, now)
            self.metrics.dry_runs.labels(self.cfg.model_name, ev.trigger).inc()
        return self._record(d, ev.trigger)

    def _record(self, d: Decision, trigger: str) -> Decision:
        name = self.cfg.model_name
        d = replace(d, reason=redact(d.reason))  # exception texts carry the tracking URI
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


def authorized(header: str | None, token: str) -> bool:
    scheme, _, credentials = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())


def loopback(host: str) -> bool:
    """Only this machine can connect to `host`."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(cfg: MonitorConfig) -> Starlette:
    if cfg.auth and not cfg.token:
        raise ValueError(f"no webhook token: set {TOKEN_ENV} (or pass --insecure-no-auth for local development)")
    if not cfg.auth and not loopback(cfg.host):
        raise ValueError(f"--insecure-no-auth on {cfg.host!r}: only a loopback address may serve the webhook "
                         "without a token")
    controller = Controller(cfg)

    async def alertmanager(request: Request) -> Response:
        if cfg.auth and not authorized(request.headers.get("authorization"), cfg.token or ""):
            return JSONResponse({"error": "missing or wrong bearer token", "status": 401}, 401,
                                headers={"www-authenticate": 'Bearer realm="kdflow-controller"'})
        example = '{"version": "4", "alerts": [...]} (an Alertmanager webhook)'
        try:
            check_content_type(request.headers.get("content-type"), required=True)
            body = await read_body(request.receive, request.headers.get("content-length"), cfg.max_body_bytes)
            alerts = firing_alerts(parse_json(body, example))
        except BadRequest as exc:
            return JSONResponse({"error": exc.message, "status": exc.status}, exc.status)
        except BadPayload as exc:
            return JSONResponse({"error": f"bad Alertmanager payload: {exc}", "status": 400}, 400)
        d = await anyio.to_thread.run_sync(controller.webhook, alerts)  # MLflow calls block
        return JSONResponse(asdict(d))

    async def metrics(request: Request) -> Response:
        return Response(controller.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def status(request: Request) -> Response:
        s = controller.state
        return JSONResponse({"model_name": cfg.model_name, "tracking_uri": redact(tracking.tracking_uri()),
                             "prometheus_url": redact(cfg.prometheus_url), "webhook_auth": cfg.auth,
                             "champion": s.champion, "watch_from": s.watch_from,
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
    p.add_argument("--host", default=os.environ.get("KDFLOW_MONITOR_HOST", "127.0.0.1"),
                   help="address to bind (default 127.0.0.1; a pod needs 0.0.0.0, guarded by the NetworkPolicy)")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--data-query", default="model_version:kdflow_requests:rate",
                   help="PromQL giving a positive value per model_version that has live traffic")
    p.add_argument("--query-timeout", dest="query_timeout_s", type=float, default=5.0)
    p.add_argument("--k8s-events", metavar="DEPLOYMENT", help="record rollbacks as Kubernetes Events on DEPLOYMENT")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--insecure-no-auth", dest="auth", action="store_false",
                   help=f"accept webhooks without a bearer token (local development only; default: {TOKEN_ENV} "
                        "is required)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest webhook body (default 1 MiB; then 413)")
    p.add_argument("--rollback-candidates", type=int, default=3,
                   help="versions tried as rollback target, each downloaded and smoke-tested (default 3)")
    p.add_argument("--namespace", default=os.environ.get("KDFLOW_NAMESPACE") or None,
                   help="act only on alerts labelled with this namespace (default $KDFLOW_NAMESPACE; alerts must "
                        "always name --model-name)")
    add_limit_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """`kdflow monitor ...`: returns the process exit code."""
    try:
        args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    rest, limits = split_limits(vars(args))
    cfg = MonitorConfig(**rest, limits=limits, token=os.environ.get(TOKEN_ENV) or None)
    for name, value in (("--interval", cfg.interval_s), ("--query-timeout", cfg.query_timeout_s),
                        ("--max-body-bytes", cfg.max_body_bytes), ("--rollback-candidates", cfg.rollback_candidates)):
        if value <= 0:
            print(f"kdflow monitor: {name} must be > 0, got {value}", file=sys.stderr)
            return 2
    if not cfg.auth and not loopback(cfg.host):
        print(f"kdflow monitor: --insecure-no-auth only binds a loopback address (127.0.0.1, ::1, localhost), not "
              f"{cfg.host!r}: anyone who reaches it could roll the champion back; set {TOKEN_ENV} instead",
              file=sys.stderr)
        return 2
    if cfg.auth and not cfg.token:
        print(f"kdflow monitor: {TOKEN_ENV} is not set: the Alertmanager webhook needs a bearer token (mount it "
              "from a Kubernetes Secret); pass --insecure-no-auth for local development only", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_filter()  # from the first line on (uvicorn's loggers get it when it starts)
    import prometheus_client
    from mlflow import MlflowClient  # noqa: F401  imported before serving: seconds on a busy node, not per webhook

    # MLflow's HTTP client retries for minutes by default; a check must fail fast and say so.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    prometheus_client.disable_created_metrics()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prometheus query otherwise
    config = uvicorn_config(create_app(cfg), cfg.host, cfg.port, cfg.limits, cfg.log_level)
    if not cfg.auth:
        log.warning("!!! WEBHOOK AUTHENTICATION IS OFF (--insecure-no-auth): anyone who reaches %s:%d can roll "
                    "back %s. Local development only. !!!", cfg.host, cfg.port, cfg.model_name)
    log.info("watching %s via %s every %.0fs (window %.0fs, cooldown %.0fs%s)", cfg.model_name,
             redact(cfg.prometheus_url), cfg.interval_s, cfg.watch_window_s, cfg.cooldown_s,
             ", DRY RUN" if cfg.dry_run else "")
    return run_uvicorn(config)


if __name__ == "__main__":
    sys.exit(main())
