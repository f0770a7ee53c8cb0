"""One stage, or the registry's pipeline up to evaluate, run in process the way the CLI runs them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def stage(name, raw_or_cfg, inputs: dict[str, Path], outputs: dict[str, Path], **kw) -> dict:
    """Run one stage (a registry name, or a stage function) like the CLI does; the summary gains
    `wall_seconds` and `cpu_seconds`."""
    from kdflow.config import Params, validate
    from kdflow.stages.registry import run_stage

    cfg = raw_or_cfg if isinstance(raw_or_cfg, Params) else validate(raw_or_cfg, "benchmark profile")
    t0, c0 = time.perf_counter(), time.process_time()
    summary = name(cfg, inputs, outputs, **kw) if callable(name) else run_stage(name, cfg, inputs, outputs, **kw)
    # CPU seconds next to wall seconds: on a shared machine the wall clock also counts others' work
    return {**summary, "wall_seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def pipeline(raw: dict, work: Path, reuse: dict[str, Path] | None = None,
             stages: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The registry's pipeline up to evaluate, in `work` (finetune only when it trains).

    `reuse` maps artifacts already built (`data`, `teacher`, `soft_targets`, `baseline`) to their directories;
    their stages are skipped. `stages` runs only those (in pipeline order). Returns each stage's summary,
    `metrics` (evaluate's metrics.json, when evaluate ran) and `paths`.
    """
    from kdflow.config import validate
    from kdflow.stages.registry import PIPELINE, get, run_pipeline

    cfg = validate(raw, "benchmark profile")
    declared = {"data": "data/prepared", "teacher": "models/teacher", "soft_targets": "soft_targets/teacher",
                "baseline": "models/baseline"}
    reused = {declared[k]: v for k, v in (reuse or {}).items() if v is not None}
    names = [n for n in PIPELINE[: PIPELINE.index("evaluate") + 1]
             if not (n == "soft_targets" and cfg.soft_targets.mode == "online")
             and not (n == "finetune" and not cfg.finetune.train.epochs)
             and (stages is None or n in stages)]
    student = "models/final" if cfg.finetune.train.epochs else "models/student"
    if student != "models/final":  # evaluate reads the distilled student directly
        reused["models/final"] = work / student
    out: dict[str, Any] = run_pipeline(cfg, work, tuple(names), reused, call=stage)
    where = lambda path: Path(reused.get(path, work / path))  # noqa: E731
    metrics = where(get("evaluate").outputs[0].path) / "metrics.json"
    if "evaluate" in names:
        out["metrics"] = json.loads(metrics.read_text())
    out["paths"] = {"data": where("data/prepared"), "teacher": where("models/teacher"),
                    "soft_targets": where("soft_targets/teacher"), "baseline": where("models/baseline"),
                    "student": where(student), "metrics": where("metrics")}
    return out
