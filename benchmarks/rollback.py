"""Rollback benchmark: the end-to-end bad-promotion scenario (tests/integration/test_rollback_e2e.py)
run several times on real processes — MLflow store, prometheus, prometheus-alertmanager, the model
server and the rollback controller — measuring seconds from the bad promotion to the rollback and
counting failed requests.

    python benchmarks/rollback.py [--quick | --dry] [--runs 3]

Prints a markdown table and writes benchmarks/results/rollback.json. Rules are the production
source re-timed to a 6 s window and 2 s `for:` (scrape and evaluation every second); production
windows are minutes, so production times to rollback are minutes too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # harness, tests
from harness.cli import add_common_args  # noqa: E402
from harness.env import TMP  # noqa: E402
from harness.results import write_result  # noqa: E402
from harness.tables import table, verdict  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    os.environ.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    from tests.support import scenario

    runs = 1 if (args.quick or args.dry) else args.runs
    TMP.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rollback-", dir=TMP))
    started = time.time()
    try:
        store, results = None, []
        for i in range(runs):  # the first run builds the store while its processes boot; later ones reuse it
            store, run = scenario.run_rollback(store, work / f"run{i}", timeout_s=60)
            results.append(run.as_dict())
            print(f"  run {i + 1}: rollback after {run.promote_to_rollback_s:.1f}s, {run.requests} requests, "
                  f"{run.failed} failed", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    times = [r["promote_to_rollback_s"] for r in results]
    doc = {"runs": results, "wall_s": round(time.time() - started, 1),
           "rules": "source rules re-timed: windows 6s, for 2s; scrape/eval 1s; controller interval 1s",
           "summary": {"promote_to_rollback_s_median": statistics.median(times), "max": max(times),
                       "requests": sum(r["requests"] for r in results),
                       "failed": sum(r["failed"] for r in results)},
           "targets": {"promote_to_rollback_s": {"value": max(times), "target": "< 60", "met": max(times) < 60},
                       "failed_requests": {"value": sum(r["failed"] for r in results), "target": "0",
                                           "met": all(r["failed"] == 0 for r in results)}}}
    rows = [(i + 1, r["startup_s"], r["promote_to_bad_served_s"], r["promote_to_rollback_s"],
             r["rollback_to_good_served_s"], r["requests"], r["failed"], r["reason"], int(r["rollbacks_total"]))
            for i, r in enumerate(results)]
    lines = [f"### Rollback — bad promotion to automatic rollback, {len(results)} runs", "",
             table(["run", "startup s", "promote→bad served s", "promote→rollback s", "rollback→good served s",
                    "requests", "failed", "reason", "rollbacks"], rows), ""]
    lines += [f"- {name}: {t['value']} (target {t['target']}): {verdict(t['met'])}"
              for name, t in doc["targets"].items()]
    doc["markdown"] = "\n".join(lines)
    print("\n" + doc["markdown"])
    print(f"\nwrote {write_result('rollback', doc, args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
