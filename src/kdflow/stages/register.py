"""Stage `register`: the student into the MLflow registry as `challenger`; `champion` if the gate passes.

The gate (min retention, min speedup, max ECE, min KD gain — each optional) reads the evaluate
stage's metrics. The reference values a server compares live traffic to (teacher agreement,
confidence, class shares) are tagged on the version.
"""

from __future__ import annotations

from pathlib import Path

from kdflow import tracking
from kdflow.config import Params
from kdflow.data.reader import load_info
from kdflow.errors import KdflowError
from kdflow.io import atomic_dir, read_json, write_json
from kdflow.models.mlflow_model import register_model
from kdflow.stages.common import need


def gate(cfg: Params, m: dict) -> dict[str, bool]:
    g = cfg.register.gate
    checks = {
        "min_retention": (g.min_retention, "retention", lambda x, v: x >= v),
        "min_speedup": (g.min_speedup, "speedup", lambda x, v: x >= v),
        "max_ece": (g.max_ece, "student.ece", lambda x, v: x <= v),
        "min_kd_gain": (g.min_kd_gain, "kd_gain", lambda x, v: x >= v),
    }
    missing = [f"{name} (metric {key})" for name, (v, key, _) in checks.items() if v is not None and key not in m]
    if missing:
        raise KdflowError(f"register.gate: the metrics have no value for {', '.join(missing)}")
    return {name: bool(test(m[key], v)) for name, (v, key, test) in checks.items() if v is not None}


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    student = need(inputs, "student", "register")
    metrics_dir = need(inputs, "metrics", "register")
    m = read_json(metrics_dir / "metrics.json", "metrics")
    data_hash = load_info(inputs["data"])["hash"] if inputs.get("data") else None
    results = gate(cfg, m)
    passed = all(results.values())
    name = cfg.register.model_name
    # reference values for live monitoring; an encoder's (task embedding) have no confidence or class shares
    refs = {"teacher_agreement": m["teacher_agreement"],
            **({"confidence_mean": m["student.confidence_mean"]} if "student.confidence_mean" in m else {}),
            **({"cosine_to_teacher": m["student.cosine_to_teacher"]} if "student.cosine_to_teacher" in m else {}),
            **{k.removeprefix("student."): v for k, v in m.items() if k.startswith("student.class_share.")}}
    tags = {**{tracking.REF_PREFIX + k: f"{v:.6f}" for k, v in refs.items()},
            "kdflow.gate": "passed" if passed else "failed", **tracking.lineage_tags(cfg, data_hash)}
    with tracking.stage_run(cfg, "register", cfg.register.model_dump(mode="json"), data_hash):
        tracking.log_metrics({k: v for k, v in m.items() if "." not in k})
        teacher = Path(inputs["teacher"]) if inputs.get("teacher") else None
        version = register_model(student, name, tags, teacher_dir=teacher)
        tracking.log_artifacts(metrics_dir / "metrics.json", metrics_dir / "report.html")
    tracking.client().set_registered_model_alias(name, tracking.CHALLENGER, version)
    previous = tracking.promote(name, version) if passed else None
    summary = {"model_name": name, "version": version, "gate": results, "promoted": passed,
               "previous_champion": previous, "tracking_uri": tracking.tracking_uri()}
    with atomic_dir(need(outputs, "registration", "register")) as tmp:
        write_json(tmp / "registration.json", summary)
    return summary
