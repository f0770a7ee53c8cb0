"""The exit handler's MLflow run for each final state a runner sends: the KFP backend's MLMD states
(COMPLETE, CACHED, FAILED, CANCELED and pass-through names such as CANCELING), kfp.local's and
Vertex's (SUCCEEDED, FAILED, CANCELLED). Only a success ends FINISHED."""

import pytest
from mlflow import MlflowClient

from kdflow.kfp.run_status import PIPELINE_STATUS_TAG, outcome, record

STATES = {"COMPLETE": "FINISHED", "CACHED": "FINISHED", "SUCCEEDED": "FINISHED", "FAILED": "FAILED",
          "CANCELED": "KILLED", "CANCELLED": "KILLED", "CANCELING": "KILLED", "RUNNING": "FAILED",
          "UNKNOWN": "FAILED", "SOMETHING_NEW": "FAILED", "": "FAILED"}


@pytest.mark.parametrize("state,mlflow_status", sorted(STATES.items()))
def test_state_maps_to_the_run_status(state, mlflow_status):
    assert outcome(state) == mlflow_status


def test_record_writes_one_pipeline_run_per_state(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # one store: creating an MLflow database takes seconds
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    for state in ("COMPLETE", "FAILED", "CANCELED"):
        status = {"state": state, "pipeline_job_resource_name": "kdflow-distillation-abc",
                  "pipeline_task_name": "exit-handler-1", "error_message": "" if state == "COMPLETE" else "boom"}
        out = record("{register: {experiment: exp-status}}", status)
        run = client.get_run(out["run_id"])
        assert run.data.tags[PIPELINE_STATUS_TAG] == state
        assert run.data.tags["kdflow.kfp_run"] == "kdflow-distillation-abc"
        assert run.info.status == STATES[state]
        assert ("kdflow.error" in run.data.tags) is (state != "COMPLETE")
        assert client.get_experiment(run.info.experiment_id).name == "exp-status"
    # params that do not even parse (what may have broken the run) still get a record, in "kdflow"
    out = record("{not: [valid", {"state": "FAILED"})
    assert client.get_experiment(client.get_run(out["run_id"]).info.experiment_id).name == "kdflow"
