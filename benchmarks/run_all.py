"""Every benchmark, for `make bench` (≤ 30 min on 2 cores) and `make bench-quick` (`--quick`, ≤ 5 min).

Each benchmark runs in its own process (a crash or a leak stays there); their markdown tables are
printed and collected, with the date and the machine, into `results/TABLES.md` for the README.
`serving.py` and `rollback.py` (another owner's) run when present, with the same flags.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

# name: (script, extra args, results file); every script takes --quick, --dry and --results
OURS = {
    "quality": ("quality.py", [], "quality"),
    "hinton": ("quality.py", ["--profile", "hinton"], "hinton"),
    "training_speed": ("training_speed.py", [], "training_speed"),
    "soft_targets_speed": ("soft_targets_speed.py", [], "soft_targets_speed"),
}
EXTERNAL = {"serving": "serving.py", "rollback": "rollback.py"}
BUDGET_MIN = {"full": 30, "quick": 5, "dry": 5}


def run_one(cmd: list[str]) -> tuple[int, str, float]:
    """Run a benchmark, echoing its output as it comes; returns (exit code, stdout, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=C.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=C.child_env(C.THREADS))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        print(line, end="", flush=True)
    return proc.wait(), "".join(lines), time.perf_counter() - t0


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
    parts = ["# kdflow benchmarks (collected from separate runs)"]
    for name in names:
        doc = json.loads((results / f"{name}.json").read_text())
        m = doc["machine"]
        md = doc.get("markdown", f"### {name}: no tables stored")
        parts.append(f"{md}\n\n_{name}.json: {doc['date']} · {m['cpu']} · {m['cores']} cores · torch "
                     f"{m['torch']} · load average at the end {m['load_avg_1m']:.1f}_")
    publish("\n\n".join(parts), results)
    return 0


def publish(text: str, results: Path) -> None:
    """results/TABLES.md, and the README's block between the BENCH markers (when it has them)."""
    (results / "TABLES.md").write_text(text + "\n")
    readme = C.ROOT / "README.md"
    start, end = "<!-- BENCH:START -->", "<!-- BENCH:END -->"
    doc = readme.read_text()
    if results.resolve() == C.RESULTS.resolve() and start in doc and end in doc:
        body = text.split("\n", 1)[1]  # without the title: README's own heading stands above it
        readme.write_text(doc[:doc.index(start) + len(start)] + "\n" + body.strip() + "\n" + doc[doc.index(end):])
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(p)
    p.add_argument("--only", help="comma-separated subset of " + ", ".join([*OURS, *EXTERNAL]))
    p.add_argument("--collect", nargs="+", metavar="NAME",
                   help="run nothing: write TABLES.md from results/<NAME>.json of runs made one by one")
    a = p.parse_args(argv)
    if a.collect:
        return collect(a.collect, a.results)
    size = C.size_of(a)
    flags = ["--dry"] if a.dry else ["--quick"] if a.quick else []
    chosen = a.only.split(",") if a.only else [*OURS, *EXTERNAL]
    plan: list[tuple[str, list[str]]] = []
    for name in chosen:
        if name in OURS:
            script, extra, _ = OURS[name]
            plan.append((name, [sys.executable, str(C.BENCH / script), *extra, *flags, "--results", str(a.results)]))
        elif (C.BENCH / EXTERNAL[name]).is_file():
            plan.append((name, [sys.executable, str(C.BENCH / EXTERNAL[name]), *flags, "--results", str(a.results)]))
    a.results.mkdir(parents=True, exist_ok=True)
    t0, sections, timing, failed = time.perf_counter(), [], [], []
    for name, cmd in plan:
        print(f"\n== {name} ==", flush=True)
        code, out, secs = run_one(cmd)
        timing.append((name, f"{secs / 60:.1f}", "ok" if code == 0 else f"FAILED ({code})"))
        if code:
            failed.append(name)
            print(out[-3000:], flush=True)
        results_name = OURS[name][2] if name in OURS else name
        sections.append(markdown_of(results_name, a.results, out) if not code else f"### {name}\n\nfailed: see log")
    total = (time.perf_counter() - t0) / 60
    m = C.machine()
    timing.append(("**total**", f"{total:.1f}", f"budget {BUDGET_MIN[size]} min: "
                                                 f"{C.verdict(total <= BUDGET_MIN[size])}"))
    target = {"full": "make bench", "quick": "make bench-quick", "dry": "dry run"}[size]
    head = (f"# kdflow benchmarks ({target})\n\n"
            f"{time.strftime('%Y-%m-%d %H:%M %Z')} · {m['cpu']} · {m['cores']} cores · torch {m['torch']} · "
            f"{C.THREADS} threads · load average at the end {m['load_avg_1m']:.1f}")
    text = "\n\n".join([head, *sections, "### Time taken\n\n" + C.table(["benchmark", "minutes", "status"], timing)])
    publish(text, a.results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
