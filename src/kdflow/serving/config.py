"""Server settings (command line → `ServeConfig`) and the CPU budget the server may use."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from kdflow.serving.limits import HttpLimits


@dataclass(frozen=True)
class ServeConfig:
    model: str                       # models:/<name>@<alias>, models:/<name>/<version> or a model directory
    teacher: str | None = None       # teacher model directory (directory mode; registry mode reads lineage)
    host: str = "127.0.0.1"
    port: int = 8000
    alias_poll_s: float = 30.0       # how often a models:/<name>@<alias> source re-resolves the alias
    max_batch: int = 64              # rows per forward pass
    max_wait_ms: float = 2.0         # longest a request waits for others to share its forward pass
    max_request_items: int = 256     # rows one /predict request may carry
    max_body_bytes: int = 0          # 0 = derived from max_request_items and the input size
    shadow_rate: float = 0.1         # fraction of requests also run through the teacher
    shadow_queue: int = 256          # pending shadow requests; more are dropped (and counted)
    feedback_capacity: int = 50_000  # recent request ids remembered for /feedback
    threads: int = 0                 # torch intra-op threads; 0 = available CPUs - 1 (one core serves HTTP)
    metrics: bool = True
    jit: bool = True                 # TorchScript-trace the models (falls back to eager when unusable)
    backend: str = "auto"            # kdflow.inference backend; auto = model.json's measured choice
    log_level: str = "info"
    limits: HttpLimits = field(default_factory=HttpLimits)  # HTTP timeouts and size/concurrency limits

    def torch_threads(self) -> int:
        return self.threads or max(1, available_cpus() - 1)


def available_cpus() -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup v2 quota (a pod's CPU limit)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


def _positive(kind):
    def check(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return check


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def _non_negative(kind):
    def check(text: str):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value
    return check


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdflow serve", description="Serve a kdflow student over HTTP.")
    p.add_argument("--model", required=True,
                   help="models:/<name>@<alias> (hot-swapped when the alias moves), models:/<name>/<version>, "
                        "or a model directory (model.json + model.pt)")
    p.add_argument("--teacher", help="teacher model directory for the shadow check (directory mode)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="default 8000 (the image EXPOSEs it)")
    p.add_argument("--alias-poll", dest="alias_poll_s", type=_positive(float), default=30.0,
                   help="seconds between alias checks (default 30)")
    p.add_argument("--max-batch", type=_positive(int), default=64, help="rows per forward pass")
    p.add_argument("--max-wait-ms", type=_non_negative(float), default=2.0,
                   help="max milliseconds a request waits to be batched with others (0 = no waiting)")
    p.add_argument("--max-request-items", type=_positive(int), default=256, help="rows per /predict request")
    p.add_argument("--max-body-bytes", type=_non_negative(int), default=0, help="0 = derived from the input size")
    p.add_argument("--shadow-rate", type=_rate, default=0.1, help="fraction of requests shadowed by the teacher")
    p.add_argument("--shadow-queue", type=_positive(int), default=256)
    p.add_argument("--feedback-capacity", type=_positive(int), default=50_000)
    p.add_argument("--threads", type=_non_negative(int), default=0, help="torch threads; 0 = CPUs - 1")
    p.add_argument("--no-metrics", dest="metrics", action="store_false", help="disable Prometheus instrumentation")
    p.add_argument("--no-jit", dest="jit", action="store_false", help="serve eager modules (no TorchScript trace)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "eager"],
                   help="inference engine: auto = the faster of torch / onnxruntime recorded in model.json")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_limit_args(p)
    return p


def add_limit_args(p: argparse.ArgumentParser) -> None:
    """HTTP limits (kdflow.serving.limits.HttpLimits; the server and the controller share them)."""
    d = HttpLimits()
    g = p.add_argument_group("HTTP limits")
    g.add_argument("--header-timeout", dest="header_timeout_s", type=_positive(float), default=d.header_timeout_s,
                   help=f"seconds for a request's line + headers to arrive (default {d.header_timeout_s:g}; then 408)")
    g.add_argument("--body-timeout", dest="body_timeout_s", type=_positive(float), default=d.body_timeout_s,
                   help=f"seconds for a request body to arrive (default {d.body_timeout_s:g}; then 408)")
    g.add_argument("--max-header-bytes", type=_positive(int), default=d.max_header_bytes,
                   help=f"request line + headers (default {d.max_header_bytes}; then 431)")
    g.add_argument("--limit-concurrency", type=_positive(int), default=d.limit_concurrency,
                   help=f"connections + in-flight requests (default {d.limit_concurrency}; then 503)")
    g.add_argument("--backlog", type=_positive(int), default=d.backlog, help=f"listen backlog (default {d.backlog})")
    g.add_argument("--keep-alive", dest="keep_alive_s", type=_positive(float), default=d.keep_alive_s,
                   help=f"seconds an idle keep-alive connection stays open (default {d.keep_alive_s:g})")


def split_limits(args: dict) -> tuple[dict, HttpLimits]:
    """Parsed arguments → (the rest, HttpLimits)."""
    names = {f.name for f in fields(HttpLimits)}
    return ({k: v for k, v in args.items() if k not in names},
            HttpLimits(**{k: v for k, v in args.items() if k in names}))


def parse_args(argv: list[str]) -> ServeConfig:
    rest, limits = split_limits(vars(parser().parse_args(argv)))
    return ServeConfig(**rest, limits=limits)
