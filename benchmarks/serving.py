"""Serving benchmark: real server processes under `wrk` (a C HTTP load generator) at concurrency
1, 8 and 32, single-item /predict requests, micro-batching on.

    python benchmarks/serving.py [--quick | --dry] [--duration 10]

Servers: the student with metrics, the student with `--no-metrics` (the instrumentation's cost), a
no-op model (`serving_noop.NoOp`: the framework's ceiling, the same HTTP/validation/batching/engine
path with no arithmetic) and the teacher. Models have random weights (speed does not depend on them)
and carry the engine choice a training stage records (`kdflow.inference.choose`). The servers run
side by side and are measured in turn, `--repeats` times interleaved; the table shows medians (a
shared machine's load drifts over minutes). `wrk` is pinned to one CPU (`taskset`, `--wrk-cpu`) so
the load generator does not migrate between the cores the server uses. Prints a markdown table and
writes benchmarks/results/serving.json, with the server's CPU time per request (a cost the machine's
load blurs less than latency).

Targets (student, this 2-core machine): >= 3,500 predictions/s with p99 <= 25 ms at concurrency 32,
throughput >= 0.8x the no-op model's at concurrency 32, and batch-1 (concurrency 1) p50 latency <= 1/3
of the teacher's.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve()
sys.path[:0] = [str(_HERE.parent), str(_HERE.parents[1])]  # harness, tests.support
from harness.cli import add_common_args  # noqa: E402
from harness.env import TMP  # noqa: E402
from harness.results import write_result  # noqa: E402
from harness.tables import table, verdict  # noqa: E402

SHAPE = [1, 28, 28]
STUDENT = {"name": "mlp", "kwargs": {"hidden": [128]}}
TEACHER = {"name": "resnet", "kwargs": {"width": 32, "depth": 2, "stages": 3}}
NOOP = {"name": "import:serving_noop:NoOp", "kwargs": {}}  # benchmarks/serving_noop.py
NOOP_ENV = {"KDFLOW_ALLOWED_IMPORTS": "serving_noop"}    # the server's allow-list for import: archs
TARGET_RPS, TARGET_P99_MS, TARGET_CEILING = 3500, 25, 0.8
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[BODY]]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def make_models(root: Path) -> dict[str, dict]:
    import torch

    from kdflow.inference import choose
    from kdflow.models import build_model, count_params, save_model

    torch.manual_seed(0)
    out = {}
    for role, arch in (("student", STUDENT), ("teacher", TEACHER), ("noop", NOOP)):
        spec = {**arch, "input_shape": SHAPE, "num_classes": 10, "mean": [0.0], "std": [1.0]}
        model = build_model(spec).eval()
        inference = choose(model, spec)  # as a training stage records it: the server's `auto` reads it
        save_model(model, root / role, spec, inference=inference)
        out[role] = {"dir": str(root / role), "arch": f"{arch['name']} {arch['kwargs']}", "params": count_params(model),
                     "inference": inference}
    return out


def lua_script(root: Path) -> Path:
    rng = random.Random(0)
    x = [[[round(rng.random(), 4) for _ in range(SHAPE[2])] for _ in range(SHAPE[1])]]
    body = json.dumps({"inputs": [x]})
    path = root / "predict.lua"
    path.write_text(LUA.replace("[[BODY]]", f"[==[{body}]==]"))  # level-2 long string: the JSON holds "]]"
    return path


def wrk(url: str, script: Path, concurrency: int, seconds: float, cpu: int | None = None) -> dict:
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    cmd = [*pin, "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{out.stdout}\n{out.stderr}")
    r = json.loads(line[len("WRKJSON "):])
    seconds = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {"requests": r["requests"], "errors": errors, "rps": round(r["requests"] / seconds, 1),
            "p50_ms": r["p50_us"] / 1000, "p95_ms": r["p95_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "max_ms": r["max_us"] / 1000}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (a load-independent cost measure)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_stats(base: str) -> tuple[float, float]:
    """(sum, count) of kdflow_batch_size on a server; (0, 0) with metrics off."""
    import httpx

    r = httpx.get(f"{base}/metrics", timeout=5)
    if r.status_code != 200:
        return 0.0, 0.0
    total = sum(float(v) for v in re.findall(r"^kdflow_batch_size_sum\{[^}]*\} (\S+)$", r.text, re.M))
    count = sum(float(v) for v in re.findall(r"^kdflow_batch_size_count\{[^}]*\} (\S+)$", r.text, re.M))
    return total, count


def instrumentation_cost(n: int = 20_000) -> dict:
    """In-process price of the metrics a single-item request records, and of one /metrics scrape: a
    number the machine's load cannot blur the way it blurs the with/without HTTP comparison."""
    import numpy as np

    from kdflow.serving.server_metrics import ServerMetrics, VersionMetrics

    m = ServerMetrics()
    classes = [str(i) for i in range(10)]
    versions = [VersionMetrics(m, v, classes) for v in ("1", "2")]
    conf, index = np.array([0.9], np.float32), np.array([3])
    vm = versions[0]
    started = time.perf_counter()
    for _ in range(n):
        vm.batch(conf, index)
        vm.predicted(0.001)
    per_request_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(50):
        m.render()
    return {"metrics_us_per_request": round(per_request_us, 2),
            "scrape_ms": round((time.perf_counter() - started) / 50 * 1000, 3)}


def measure(label: str, proc, base: str, script: Path, c: int, seconds: float, wrk_cpu: int | None = None) -> dict:
    before, cpu = batch_stats(base), cpu_seconds(proc.pid)
    load_avg = os.getloadavg()[0]
    result = wrk(f"{base}/predict", script, c, seconds, wrk_cpu)
    cpu = cpu_seconds(proc.pid) - cpu
    after = batch_stats(base)
    batches = after[1] - before[1]
    row = {"server": label, "concurrency": c, **result,
           "server_cpu_ms_per_request": round(1000 * cpu / max(1, result["requests"]), 3),
           "mean_batch": round((after[0] - before[0]) / batches, 2) if batches else None,
           "load_avg_1m": round(load_avg, 2)}
    print(f"  {label:22s} c={c:<3d} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:6.2f} ms  "
          f"p99 {result['p99_ms']:6.2f} ms  errors {result['errors']}  "
          f"cpu {row['server_cpu_ms_per_request']:.3f} ms/req  load {load_avg:.1f}", flush=True)
    return row


def median_rows(samples: list[dict]) -> list[dict]:
    """One row per (server, concurrency): medians over the repeats, errors summed."""
    out = []
    for key in dict.fromkeys((r["server"], r["concurrency"]) for r in samples):
        group = [r for r in samples if (r["server"], r["concurrency"]) == key]
        row = {"server": key[0], "concurrency": key[1], "repeats": len(group),
               "requests": sum(r["requests"] for r in group), "errors": sum(r["errors"] for r in group)}
        for field in ("rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "server_cpu_ms_per_request", "mean_batch",
                      "load_avg_1m"):
            values = [r[field] for r in group if r[field] is not None]
            row[field] = round(statistics.median(values), 3) if values else None
        out.append(row)
    return out


def run(args) -> dict:
    from kdflow.serving.limits import HttpLimits
    from tests.support import harness

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package: wrk)")
    seconds = 1 if args.dry else 3 if args.quick else args.duration
    levels = [1, 8] if args.dry else [1, 32] if args.quick else [1, 8, 32]
    repeats = 1 if (args.dry or args.quick) else args.repeats
    TMP.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="serving-", dir=TMP))
    models = make_models(work)
    script = lua_script(work)
    configs = [("student", models["student"]["dir"], []),
               ("student --no-metrics", models["student"]["dir"], ["--no-metrics"]),
               ("no-op model (ceiling)", models["noop"]["dir"], []),
               ("teacher", models["teacher"]["dir"], [])]
    wrk_cpu = None if args.wrk_cpu < 0 else args.wrk_cpu
    here = str(Path(__file__).parent)
    env = harness.child_env(**NOOP_ENV, PYTHONPATH=os.pathsep.join([str(harness.SRC), here]))
    envs = {}
    if args.before_src:  # the same student served by an older checkout's code, measured in the same rounds
        label = f"student (before: {args.before_label or args.before_src})"
        configs.insert(1, (label, models["student"]["dir"], []))
        envs[label] = {**env, "PYTHONPATH": os.pathsep.join([str(Path(args.before_src).resolve()), here])}
    samples = []
    try:
        with harness.Processes(work) as procs:
            servers = []  # all up at once (idle ones cost nothing); measured one at a time, interleaved, so
            for i, (label, model, extra) in enumerate(configs):  # a change in machine load hits every server alike
                port = harness.free_port()
                name = f"{i}-" + label.split(" (")[0].replace(" --", "-").replace(" ", "-")
                proc = procs.start(name, harness.server_cmd(model, port, "--log-level", "warning", "--shadow-rate", "0",
                                                            *extra), envs.get(label, env))
                servers.append((label, proc, f"http://{harness.LOCAL}:{port}"))
            for _, proc, base in servers:
                harness.wait_http(f"{base}/readyz", proc, 120)
                wrk(f"{base}/predict", script, 8, 1, wrk_cpu)  # warm-up: JIT, allocator, connections
            for _ in range(repeats):
                for c in levels:
                    for label, proc, base in servers:
                        samples.append(measure(label, proc, base, script, c, seconds, wrk_cpu))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    rows = median_rows(samples)
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"  # what uvicorn's "auto" picks
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return {"models": {k: {kk: vv for kk, vv in v.items() if kk != "dir"} for k, v in models.items()},
            "input_shape": SHAPE, "seconds_per_run": seconds, "repeats": repeats,
            "load_generator": "wrk -t1 (closed loop)" + (f", pinned to CPU {wrk_cpu}" if wrk_cpu is not None else ""),
            "http_stack": f"uvicorn {http} + {loop}",
            "http_limits": dataclasses.asdict(HttpLimits()),  # the server's defaults (docs/monitoring.md)
            "results": rows, "samples": samples, "instrumentation": instrumentation_cost(), "targets": targets(rows)}


def pick(rows, server, c):
    return next((r for r in rows if r["server"] == server and r["concurrency"] == c), None)


def targets(rows) -> dict:
    out = {}
    s32, s1, t1 = pick(rows, "student", 32), pick(rows, "student", 1), pick(rows, "teacher", 1)
    n32 = pick(rows, "no-op model (ceiling)", 32)
    if s32:
        out["student_c32_predictions_per_s"] = {"value": s32["rps"], "target": f">= {TARGET_RPS}",
                                                "met": s32["rps"] >= TARGET_RPS}
        out["student_c32_p99_ms"] = {"value": s32["p99_ms"], "target": f"<= {TARGET_P99_MS}",
                                     "met": s32["p99_ms"] <= TARGET_P99_MS}
    if s32 and n32:
        ratio = round(s32["rps"] / n32["rps"], 3)
        out["student_over_noop_c32_throughput"] = {"value": ratio, "target": f">= {TARGET_CEILING}",
                                                   "met": ratio >= TARGET_CEILING}
    if s1 and t1:
        ratio = round(s1["p50_ms"] / t1["p50_ms"], 3)
        out["batch1_p50_student_over_teacher"] = {"value": ratio, "target": "<= 0.333", "met": ratio <= 1 / 3}
    before = next((r["server"] for r in rows if r["server"].startswith("student (before")), None)
    b32 = pick(rows, before, 32) if before else None
    if s32 and b32:
        out["student_c32_now_vs_before"] = {
            "before": before, "throughput_x": round(s32["rps"] / b32["rps"], 3),
            "p99_ms": [b32["p99_ms"], s32["p99_ms"]],
            "server_cpu_ms_per_request": [b32["server_cpu_ms_per_request"], s32["server_cpu_ms_per_request"]]}
    for c in (1, 32):
        on, off = pick(rows, "student", c), pick(rows, "student --no-metrics", c)
        if on and off:
            out[f"metrics_cost_c{c}"] = {"throughput_pct": round(100 * (1 - on["rps"] / off["rps"]), 1),
                                         "p50_ms_added": round(on["p50_ms"] - off["p50_ms"], 3)}
    out["errors"] = {"value": sum(r["errors"] for r in rows), "target": "0",
                     "met": all(r["errors"] == 0 for r in rows)}
    return out


def report(doc: dict) -> str:
    rows = [(r["server"], r["concurrency"], f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}",
             f"{r['p99_ms']:.2f}", r["errors"], r["mean_batch"] if r["mean_batch"] is not None else "-",
             f"{r['server_cpu_ms_per_request']:.3f}", r["load_avg_1m"]) for r in doc["results"]]
    lines = [table(["server", "concurrency", "predictions/s", "p50 ms", "p95 ms", "p99 ms", "errors", "mean batch",
                    "server CPU ms/req", "load avg"], rows), ""]
    for name, t in doc["targets"].items():
        if "met" in t:
            lines.append(f"- {name}: {t['value']} (target {t['target']}): {verdict(t['met'])}")
        elif "before" in t:
            lines.append(f"- {name}: {t['throughput_x']}× the predictions/s of {t['before']}, p99 {t['p99_ms'][0]} → "
                         f"{t['p99_ms'][1]} ms, server CPU {t['server_cpu_ms_per_request'][0]} → "
                         f"{t['server_cpu_ms_per_request'][1]} ms/request")
        else:
            lines.append(f"- {name}: throughput {t['throughput_pct']}% lower with metrics, "
                         f"p50 {t['p50_ms_added']:+.3f} ms")
    cost = doc["instrumentation"]
    lines.append(f"- instrumentation in-process: {cost['metrics_us_per_request']} µs per single-item request "
                 f"(worst case: one row per forward pass), {cost['scrape_ms']} ms per /metrics scrape")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--duration", type=float, default=5.0, help="seconds of load per run")
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs per server and level (medians reported)")
    p.add_argument("--before-src", help="a src/ directory of an older kdflow (e.g. `git archive <rev> src`): its "
                   "server gets a student row of its own, measured in the same interleaved rounds")
    p.add_argument("--before-label", help="what to call it in the table (default: the path)")
    p.add_argument("--wrk-cpu", type=int, default=(os.cpu_count() or 1) - 1,
                   help="CPU wrk is pinned to with taskset (default: the last; -1 = not pinned)")
    args = p.parse_args(argv)
    os.environ.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    started = time.time()
    doc = run(args)
    doc["wall_s"] = round(time.time() - started, 1)
    doc["markdown"] = ("### Serving — student, no-op ceiling and teacher servers under `wrk` (median of "
                       f"{doc['repeats']} rounds; {doc['load_generator']})\n\n" + report(doc))
    print()
    print(doc["markdown"])
    print(f"\nwrote {write_result('serving', doc, args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
