"""Fault injection in the MLflow client, for tests and the rollback benchmark: the real client (a real
store behind it) wrapped by a proxy that, at chosen calls, waits (latency) and/or raises what a busy
or unreachable registry raises: `MlflowException(error_code=TEMPORARILY_UNAVAILABLE)`. Nothing of the
store is mocked; a call that is not faulted goes to it unchanged.

A plan is a list of rules; a rule matches a call by the client method (`set_registered_model_alias`, or
`download` for `tracking.download_model`, or `*`) and optionally by the step: the name of a kdflow function
on the call stack (`rollback`, `unusable`, `candidates`, `current`, `registry_version`, `load`). It then adds
`latency_s` and fails the first `fail` matching calls (-1: every one) or a random `rate` of them.

In this process: `with injected(plan): ...`. In a child process (a real server or controller):

    python -m tests.support.faults <plan.json> kdflow.monitoring.controller --model-name ...

runs the module as `__main__` with the proxy installed; the plan file is re-read when it changes (a test
switches faults on and off while the processes run), and every injected fault is appended to the plan's
`log` file (JSON lines), which the suite counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import runpy
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"


@dataclass
class Rule:
    method: str = "*"
    step: str | None = None
    fail: int = 0             # fail the first N matching calls; -1 = all of them
    rate: float = 0.0         # or fail this share of them at random
    latency_s: float = 0.0    # added before every matching call
    seen: int = field(default=0, repr=False)

    def matches(self, method: str, stack: set[str]) -> bool:
        return self.method in ("*", method) and (self.step is None or self.step in stack)


class Plan:
    """Rules + the log of injected faults; thread-safe; optionally reloaded from a JSON file."""

    def __init__(self, rules: list[Rule] | None = None, seed: int = 0, log: str | None = None,
                 path: Path | None = None):
        self.rules = rules or []
        self.log = log
        self.path = path
        self.injected = 0
        self.calls = 0
        self._mtime: float | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        if path is not None:
            self._reload()

    @classmethod
    def from_doc(cls, doc: dict, path: Path | None = None) -> Plan:
        return cls([Rule(**r) for r in doc.get("rules", [])], doc.get("seed", 0), doc.get("log"), path)

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._mtime:
            return
        doc = json.loads(self.path.read_text() or "{}")
        self._mtime = mtime
        self.rules = [Rule(**r) for r in doc.get("rules", [])]
        self.log = doc.get("log", self.log)
        self._rng = random.Random(doc.get("seed", 0))

    def before(self, method: str) -> None:
        """Called before each client call: sleep and/or raise as the plan says."""
        from mlflow.exceptions import MlflowException

        stack = _stack_names()
        with self._lock:
            if self.path is not None:
                self._reload()
            self.calls += 1
            delay, fail = 0.0, False
            for rule in self.rules:
                if not rule.matches(method, stack):
                    continue
                delay += rule.latency_s
                rule.seen += 1
                if rule.fail < 0 or rule.seen <= rule.fail or (rule.rate and self._rng.random() < rule.rate):
                    fail = True
            if fail:
                self.injected += 1
                self._write(method, stack)
        if delay:
            time.sleep(delay)
        if fail:
            raise MlflowException(f"injected fault: registry temporarily unavailable ({method})",
                                  error_code=TEMPORARILY_UNAVAILABLE)

    def _write(self, method: str, stack: set[str]) -> None:
        if self.log:
            steps = sorted(stack & STEPS)
            with open(self.log, "a") as f:
                f.write(json.dumps({"t": time.time(), "pid": os.getpid(), "method": method, "steps": steps}) + "\n")


STEPS = {"rollback", "unusable", "candidates", "current", "registry_version", "load", "promote"}


def _stack_names() -> set[str]:
    names, frame = set(), sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("kdflow."):
            names.add(frame.f_code.co_name)
        frame = frame.f_back
    return names


class FaultyClient:
    """An MlflowClient whose every method first asks the plan."""

    def __init__(self, real, plan: Plan):
        self._real, self._plan = real, plan

    def __getattr__(self, name: str):
        attr = getattr(self._real, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self._plan.before(name)
            return attr(*args, **kwargs)
        return call


def install(plan: Plan):
    """Wrap `kdflow.tracking.client` and `kdflow.tracking.download_model`; returns a function that undoes it."""
    from kdflow import tracking

    real_client, real_download = tracking.client, tracking.download_model

    def client():
        return FaultyClient(real_client(), plan)

    def download_model(uri, dst=None):
        plan.before("download")
        return real_download(uri, dst)

    tracking.client, tracking.download_model = client, download_model

    def undo() -> None:
        tracking.client, tracking.download_model = real_client, real_download
    return undo


@contextlib.contextmanager
def injected(*rules: Rule, seed: int = 0) -> Iterator[Plan]:
    plan = Plan(list(rules), seed)
    undo = install(plan)
    try:
        yield plan
    finally:
        undo()


def write_plan(path: Path, *rules: Rule, seed: int = 0, log: str | None = None) -> None:
    """Replace the plan a child process follows (written beside, then renamed: never read half-written)."""
    doc = {"seed": seed, "log": log, "rules": [{k: v for k, v in vars(r).items() if k != "seen"} for r in rules]}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def count_log(path: Path) -> int:
    try:
        return sum(1 for _ in path.open())
    except OSError:
        return 0


def main(argv: list[str]) -> None:
    plan_path, module, *rest = argv
    install(Plan(path=Path(plan_path)))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
