"""Every benchmark, for `make bench` (≤ 30 min on 2 cores) and `make bench-quick` (`--quick`, ≤ 5 min).

Each benchmark runs in its own process (a crash or a leak stays there); their markdown tables are
printed and collected, with the date and the machine, into `results/TABLES.md` for the README.

Two phases keep the statistics honest on a small machine. Accuracy benchmarks (what they report is a
test accuracy, not a time) run side by side, one lane per core: the long MNIST-1D set in one lane with
its seeds in parallel workers, the small sets one after another in the other lane with 1 thread. Timing
benchmarks then run alone, one at a time, as they would on a quiet machine. Split, teacher and soft
targets of generated data sets are cached by content hash (`quality.py`), so a second run skips the
teachers. `results/run_all.json` holds each benchmark's wall time and the total against the budget.
`serving.py` and `rollback.py` (another owner's) run when present, with the same flags.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.cli import add_common_args, size_of  # noqa: E402
from harness.env import BENCH, RESULTS, ROOT, THREADS, child_env  # noqa: E402
from harness.goals import goal_rows, goals_table  # noqa: E402
from harness.machine import machine  # noqa: E402
from harness.results import write_result  # noqa: E402
from harness.tables import table, verdict  # noqa: E402

ACCURACY, TIMING = "accuracy", "timing"


@dataclass
class Bench:
    script: str
    args: list[str]
    results: str  # results/<results>.json
    kind: str  # ACCURACY may share the CPUs with other accuracy runs; TIMING runs alone
    lane: int = 0  # accuracy lanes run side by side; a lane's benchmarks run one after another
    threads: int = THREADS
    owned: bool = True  # False: another owner's script, run only when present
    out: dict = field(default_factory=dict)


def plan() -> dict[str, Bench]:
    return {
        # the long one: its 3 seeds at once in worker processes of 1 thread (3 on 2 cores beats 2 rounds of 2)
        "quality": Bench("quality.py", ["--sets", "mnist1d", "--jobs", "3"], "quality", ACCURACY, lane=0),
        "quality-lowlabel-digits": Bench("quality.py", ["--sets", "lowlabel,digits", "--jobs", "1", "--threads", "1",
                                                        "--name", "quality-lowlabel-digits"],
                                         "quality-lowlabel-digits", ACCURACY, lane=1, threads=1),
        "hinton": Bench("quality.py", ["--profile", "hinton", "--jobs", "1", "--threads", "1"], "hinton", ACCURACY,
                        lane=1, threads=1),
        "training_speed": Bench("training_speed.py", [], "training_speed", TIMING),
        "soft_targets_speed": Bench("soft_targets_speed.py", [], "soft_targets_speed", TIMING),
        "serving": Bench("serving.py", [], "serving", TIMING, owned=False),
        "rollback": Bench("rollback.py", [], "rollback", TIMING, owned=False),
    }


BUDGET_MIN = {"full": 30, "quick": 5, "dry": 5}
_print_lock = threading.Lock()
# Each benchmark runs in its own session, so its process group (pool workers, `kdflow` children, servers) can
# be stopped as one: pid (= its group id) -> name of the benchmarks running now.
_running: dict[int, str] = {}
_stopping = threading.Event()


def live_members(pgid: int) -> int:
    """Processes of group `pgid` that are not zombies (/proc; a zombie waits only for its parent to reap it)."""
    n = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue  # gone while we looked
        n += state != "Z" and int(group) == pgid
    return n


def kill_groups(pgids: list[int], grace: float = 3.0) -> None:
    """SIGTERM each process group, SIGKILL what is left of it after `grace` seconds."""
    def signal_all(sig):
        for pg in pgids:
            try:
                os.killpg(pg, sig)
            except ProcessLookupError:
                pass

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(live_members(pg) for pg in pgids):
        time.sleep(0.05)
    signal_all(signal.SIGKILL)


def _on_signal(signum, frame) -> None:
    """Ctrl-C / SIGTERM: stop the running benchmarks' process groups, start no more, exit 128 + signal."""
    _stopping.set()  # before the snapshot: a benchmark starting now sees it after registering (run_one)
    running = dict(_running)
    kill_groups(list(running))
    # os.write, not print: the handler may interrupt a print of the main thread (a reentrant write raises)
    os.write(2, f"\nrun_all: stopped by {signal.Signals(signum).name}: killed {len(running)} running "
                f"benchmark(s) ({', '.join(running.values()) or 'none'}) with their child processes; results of "
                f"benchmarks that had finished are kept\n".encode())
    sys.exit(128 + signum)


def run_one(name: str, cmd: list[str], threads: int, prefix: bool) -> dict:
    """Run a benchmark, echoing its output as it comes (prefixed with its name when others run beside it);
    returns exit code, output, wall seconds and the 1-min load average at start and end."""
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=child_env(threads), start_new_session=True)
    _running[proc.pid] = name
    try:
        if _stopping.is_set():  # the stop signal came while this one was starting: the handler missed it
            kill_groups([proc.pid])
        lines = []
        for line in proc.stdout:
            lines.append(line)
            with _print_lock:
                print(f"[{name}] {line}" if prefix else line, end="", flush=True)
        # wait4: this child's CPU seconds, with every process it waited for (its pool workers, `kdflow` children)
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        _running.pop(proc.pid, None)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"code": proc.returncode, "stdout": "".join(lines), "seconds": time.perf_counter() - t0,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "load_start": load0, "load_end": os.getloadavg()[0]}


def run_lanes(lanes: list[list[tuple[str, list[str], Bench]]], t0: float) -> None:
    """Each lane in its own thread, its benchmarks one after another; results land in each Bench's `out`."""
    def lane(items):
        for name, cmd, b in items:
            if _stopping.is_set():
                return
            b.out = {**run_one(name, cmd, b.threads, prefix=len(lanes) > 1), "start_s": time.perf_counter() - t0}
            b.out["start_s"] -= b.out["seconds"]

    threads = [threading.Thread(target=lane, args=(items,)) for items in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def markdown_of(name: str, results: Path, stdout: str) -> str:
    """A benchmark's tables: its results JSON's `markdown`, else the markdown it printed (headings, tables,
    bullet lines)."""
    doc = results / f"{name}.json"
    if doc.is_file():
        md = json.loads(doc.read_text()).get("markdown")
        if md:
            return md
    keep = [ln.rstrip() for ln in stdout.splitlines() if ln.startswith(("|", "#", "- "))]
    return "\n".join(keep)


def collect(names: list[str], results: Path) -> int:
    """TABLES.md from benchmarks run separately, each section stamped with its own date, machine and load."""
    parts = ["# kdflow benchmarks (collected from separate runs)", goals_section(results, names)]
    for name in names:
        doc = json.loads((results / f"{name}.json").read_text())
        md = doc.get("markdown") or f"### {name}: no tables stored" + (
            " (its goals are in the table above)" if goal_rows(name, doc) else "")
        parts.append(f"{md}\n\n_{name}.json: {stamp(doc)}_")
    publish("\n\n".join(parts), results)
    return 0


def stamp(doc: dict) -> str:
    """Date · machine · load of a results file; files written before the harness stamped them lack them."""
    m = doc.get("machine") if isinstance(doc.get("machine"), dict) else None
    if "date" not in doc and m is None:
        return "machine/date not recorded"
    parts = [str(doc.get("date", "date not recorded"))]
    if m is None:
        return parts[0] + " · machine not recorded"
    parts += [str(m.get("cpu", "cpu ?")), f"{m.get('cores', '?')} cores", f"torch {m.get('torch', '?')}"]
    if isinstance(m.get("load_avg_1m"), (int, float)):
        parts.append(f"load average at the end {m['load_avg_1m']:.1f}")
    return " · ".join(parts)


def goals_section(results: Path, names: list[str]) -> str:
    """Every goal beside its measured value, read back from the results JSON (`harness.goals`)."""
    md = goals_table(results, names)
    return f"### Goals — measured value beside each goal\n\n{md}" if md else ""


def publish(text: str, results: Path) -> None:
    """results/TABLES.md, and the README's block between the BENCH markers (when it has them)."""
    (results / "TABLES.md").write_text(text + "\n")
    readme = ROOT / "README.md"
    start, end = "<!-- BENCH:START -->", "<!-- BENCH:END -->"
    doc = readme.read_text()
    if results.resolve() == RESULTS.resolve() and start in doc and end in doc:
        body = text.split("\n", 1)[1]  # without the title: README's own heading stands above it
        readme.write_text(doc[:doc.index(start) + len(start)] + "\n" + body.strip() + "\n" + doc[doc.index(end):])
    print(text, flush=True)


def time_table(benches: dict[str, Bench], total_s: float, size: str) -> tuple[str, bool]:
    budget = BUDGET_MIN[size]
    rows = [(name, b.kind, f"lane {b.lane + 1}" if b.kind == ACCURACY else "alone", f"{b.out['start_s'] / 60:.1f}",
             f"{b.out['seconds'] / 60:.1f}", f"{b.out['cpu_seconds'] / 60:.1f}",
             f"{b.out['load_start']:.1f} → {b.out['load_end']:.1f}",
             "ok" if b.out["code"] == 0 else f"FAILED ({b.out['code']})") for name, b in benches.items() if b.out]
    ok = total_s / 60 <= budget
    cpu = sum(b.out["cpu_seconds"] for b in benches.values() if b.out)
    rows.append(("**total**", "", "", "", f"{total_s / 60:.1f}", f"{cpu / 60:.1f}", "",
                 f"budget ≤ {budget} min: {verdict(ok)}"))
    return table(["benchmark", "kind", "ran", "started at (min)", "wall (min)", "CPU (min)",
                  "1-min load average (start → end)", "status"], rows), ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    benches = plan()
    p.add_argument("--only", help="comma-separated subset of " + ", ".join(benches))
    p.add_argument("--serial", action="store_true", help="no accuracy lanes side by side: everything one at a time")
    p.add_argument("--collect", nargs="+", metavar="NAME",
                   help="run nothing: write TABLES.md from results/<NAME>.json of runs made one by one")
    a = p.parse_args(argv)
    if a.collect:
        missing = [str(a.results / f"{n}.json") for n in a.collect if not (a.results / f"{n}.json").is_file()]
        if missing:
            p.error(f"no results file: {', '.join(missing)}")
        return collect(a.collect, a.results)
    size = size_of(a)
    if size != "full" and a.results == RESULTS:  # quick numbers never overwrite the full run's results
        a.results = RESULTS / size
    flags = ["--dry"] if a.dry else ["--quick"] if a.quick else []
    chosen = a.only.split(",") if a.only else list(benches)
    unknown = [n for n in chosen if n not in benches]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(benches)}")
    benches = {n: b for n, b in benches.items() if n in chosen and (b.owned or (BENCH / b.script).is_file())}
    cmd = {n: [sys.executable, str(BENCH / b.script), *b.args, *flags, "--results", str(a.results)]
           for n, b in benches.items()}
    a.results.mkdir(parents=True, exist_ok=True)
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run_benches(benches, cmd, a.results, size, a.serial)
    finally:  # main() is also called in-process (tests): leave the caller's handlers as they were
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_benches(benches: dict[str, Bench], cmd: dict[str, list[str]], results: Path, size: str, serial: bool) -> int:
    """Accuracy lanes side by side, then timing benchmarks alone; the tables, run_all.json and TABLES.md."""
    t0 = time.perf_counter()
    accuracy = [n for n, b in benches.items() if b.kind == ACCURACY]
    lanes: dict[int, list] = {}
    for n in accuracy:
        lanes.setdefault(0 if serial else benches[n].lane, []).append((n, cmd[n], benches[n]))
    print(f"\n== accuracy benchmarks: {', '.join(accuracy)} ({len(lanes)} lane(s) side by side) ==", flush=True)
    run_lanes(list(lanes.values()), t0)
    for n, b in benches.items():  # timing benchmarks: alone, one at a time
        if b.kind == TIMING:
            print(f"\n== {n} (alone) ==", flush=True)
            b.out = run_one(n, cmd[n], b.threads, prefix=False)
            b.out["start_s"] = time.perf_counter() - t0 - b.out["seconds"]
    total = time.perf_counter() - t0
    failed = [n for n, b in benches.items() if b.out["code"]]
    for n in failed:
        print(f"\n== {n} FAILED ==\n{benches[n].out['stdout'][-3000:]}", flush=True)
    sections = [f"### {n}\n\nfailed: see log" if b.out["code"] else markdown_of(b.results, results, b.out["stdout"])
                for n, b in benches.items()]
    timing, ok = time_table(benches, total, size)
    m = machine()
    target = {"full": "make bench", "quick": "make bench-quick", "dry": "dry run"}[size]
    head = (f"# kdflow benchmarks ({target})\n\n"
            f"{target}: {total / 60:.1f} min on {m['cores']} cores (budget ≤ {BUDGET_MIN[size]} min: {verdict(ok)}); "
            f"{len(benches) - len(failed)} of {len(benches)} benchmarks ran; "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')} · {m['cpu']} · torch {m['torch']} · "
            f"load average at the end {m['load_avg_1m']:.1f}")
    time_md = ("### Time taken\n\n" + timing + "\n\nAccuracy benchmarks share the cores (their results are "
               "accuracies; the latency columns they print are ratios measured in one process); timing benchmarks "
               "ran alone. A 1-min load average above the core count means other work shared the machine; then "
               "CPU minutes / cores is a lower bound of the wall time on a quiet machine.")
    write_result("run_all", {
        "size": size, "target": target, "total_seconds": round(total, 1), "budget_minutes": BUDGET_MIN[size],
        "cpu_seconds": round(sum(b.out["cpu_seconds"] for b in benches.values()), 1),
        "met": ok, "failed": failed, "markdown": time_md,
        "targets": {f"{target} wall time (min)": {"value": round(total / 60, 1), "target": f"<= {BUDGET_MIN[size]}",
                                                  "met": ok}},
        "benchmarks": {n: {"kind": b.kind, "lane": b.lane if b.kind == ACCURACY else None,
                           **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in b.out.items()
                              if k != "stdout"}} for n, b in benches.items()}}, results)
    goals = goals_section(results, [*(b.results for b in benches.values()), "run_all"])
    publish("\n\n".join(x for x in [head, goals, *sections, time_md] if x), results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
