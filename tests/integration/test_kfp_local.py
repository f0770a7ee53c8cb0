"""The whole pipeline through kfp.local (SubprocessRunner, no venv) on the tiny profile: the teacher,
soft targets in 2 ParallelFor shards, a 2-trial distill sweep with select_best, the gate's dsl.If and
the exit handler. Outputs are read back: metrics, a loadable model, MLflow runs and registry. Then
the same pipeline again with kfp.local's task cache (keyed like the backend's: inputs incl. artifact
URIs, image, command): only the uncached steps run."""

import json
import time

import pytest

from kdflow.kfp.pipeline import UNCACHED
from tests.helpers import tiny_dict

pytestmark = pytest.mark.integration
EXPERIMENT, MODEL = "kdflow-kfp-local", "kfp-local-student"
TRIALS = [{"temperature": 2.0, "alpha": 0.5}, {"temperature": 4.0, "alpha": 0.9}]


def tiny_pipeline_params(experiment: str = EXPERIMENT, **extra) -> dict:
    raw = tiny_dict(teacher__train__epochs=1, student__train__epochs=1, distill__train__epochs=1,
                    finetune__train__epochs=0, register__experiment=experiment, register__model_name=MODEL,
                    register__gate__min_retention=0.0, **extra)
    raw["kubeflow"] = {"soft_target_shards": 2, "sweep": TRIALS}
    return raw


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from kdflow.kfp.entrypoints import run_local

    root = tmp_path_factory.mktemp("kfp") / "root"
    out = []
    for label in ("first", "cached re-run"):
        t0 = time.perf_counter()
        out.append(run_local(tiny_pipeline_params(), root, cache=True))
        print(f"\nkfp.local tiny pipeline, {label}: {time.perf_counter() - t0:.0f} s")
    return out


@pytest.fixture(scope="module")
def run(runs):
    return runs[0]


def executor_output(run_dir, task: str) -> dict:
    (path,) = run_dir.glob(f"**/{task}/executor_output.json")
    return json.loads(path.read_text())


def test_metrics_and_kfp_ui_views(run):
    flat = json.loads((run / "evaluate" / "metrics" / "metrics.json").read_text())
    for key in ("teacher.accuracy", "baseline.accuracy", "student.accuracy", "retention", "kd_gain"):
        assert 0 <= flat[key] or key == "kd_gain", key
    arts = executor_output(run, "evaluate")["artifacts"]
    scalars = arts["scalars"]["artifacts"][0]["metadata"]
    assert scalars["student.accuracy"] == pytest.approx(flat["student.accuracy"])
    matrix = arts["confusion"]["artifacts"][0]["metadata"]["confusionMatrix"]
    assert len(matrix["annotationSpecs"]) == 10 and sum(map(sum, (r["row"] for r in matrix["rows"]))) == 100
    assert (run / "evaluate" / "report").read_text().lstrip().lower().startswith("<!doctype html")


def test_final_model_loads_and_carries_lineage(run):
    import torch

    from kdflow.models import load_model

    model, spec = load_model(run / "finetune" / "model")
    assert model(torch.zeros(2, *spec["input_shape"])).shape == (2, 10)
    data = executor_output(run, "prepare")["artifacts"]["data"]["artifacts"][0]["metadata"]
    assert spec["lineage"]["data_hash"] == data["hash"]
    assert json.loads((run / "prepare" / "data" / "dataset.json").read_text())["hash"] == data["hash"]
    assert data["data_key"] == executor_output(run, "data-version")["parameterValues"]["Output"]


def test_sweep_and_shards_fanned_out(run):
    (selection,) = [json.loads(p.read_text()) for p in run.glob("*/best/selection.json")
                    if "/distill/model" in p.read_text()]
    assert len(selection["candidates"]) == 2 and selection["metric"] == "training.best_val_acc"
    trials = [json.loads(p.read_text())["artifacts"]["model"]["artifacts"][0]["metadata"]["trial"]
              for p in sorted(run.glob("for-loop-*/distill/executor_output.json"))]
    assert sorted(trials, key=lambda t: t["temperature"]) == TRIALS
    manifest = json.loads((run / "merge-soft-targets" / "store" / "soft_targets.json").read_text())
    assert len(manifest["merged_from"]) == 2 and manifest["num_samples"] == 400 + 100 + 300


def test_unchanged_rerun_reuses_every_cached_step(runs):
    """The re-run executes only the uncached steps (data_version, register, the exit handler); every
    other step is served from the cache with the first run's artifacts."""
    first, again = runs
    executed = {p.parent.name.replace("-", "_") for p in again.glob("**/executor_output.json")}
    assert executed <= UNCACHED and "data_version" in executed and "register" in executed
    assert executor_output(again, "data-version")["parameterValues"] == \
        executor_output(first, "data-version")["parameterValues"]
    reg = executor_output(again, "register")["artifacts"]["registration"]["artifacts"][0]["metadata"]
    assert str(reg["version"]) == "2"  # the cached student registered again by the re-run


def test_mlflow_runs_and_registry(run, runs):
    from mlflow import MlflowClient

    from kdflow import tracking

    client = MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    stages = sorted(r.data.tags.get("kdflow.stage") for r in runs)
    for stage in ("prepare", "train_teacher", "train_baseline", "evaluate", "register", "pipeline"):
        assert stage in stages, stages
    assert stages.count("soft_targets") == 2 and stages.count("distill") == 2
    (pipeline_run, _) = [r for r in runs if r.data.tags.get("kdflow.stage") == "pipeline"]  # newest first
    assert pipeline_run.data.tags["kdflow.pipeline_status"] == "SUCCEEDED"  # kfp.local's word for it
    assert pipeline_run.info.status == "FINISHED"
    version = client.get_model_version_by_alias(MODEL, tracking.CHAMPION)  # the gate passed: promoted
    assert version.tags["kdflow.gate"] == "passed"


def test_failed_run_is_marked_in_mlflow(tmp_path):
    """The exit handler runs when a step fails and records the failure."""
    from mlflow import MlflowClient

    from kdflow import tracking
    from kdflow.kfp.entrypoints import run_local

    raw = tiny_pipeline_params("kdflow-kfp-fail", data__source="npz:/nonexistent/data.npz")
    with pytest.raises(RuntimeError, match="data-version"):
        run_local(raw, tmp_path / "root")
    client = MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name("kdflow-kfp-fail")
    (failed,) = client.search_runs([exp.experiment_id], "tags.`kdflow.stage` = 'pipeline'")
    assert failed.data.tags["kdflow.pipeline_status"] == "FAILED"
    assert failed.info.status == "FAILED"
