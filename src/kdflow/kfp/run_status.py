"""The pipeline's exit handler: one MLflow run per pipeline run recording how it ended.

A failed KFP run otherwise leaves only the stage runs that finished, which look like a
healthy partial run; this run carries the final state and, when the run API answers, the failed
task and its message.

What the KFP backend (2.14-2.17, `backend/src/v2/driver/resolve.go`) puts in PipelineTaskFinalStatus:
`state` (the exit handler DAG's MLMD state), `pipeline_task_name` (that DAG's name, e.g.
`exit-handler-1`, not the failed step), `pipeline_job_resource_name` (the run's Workflow name) and an
empty error. The failed step and its message come from the run API (`kdflow.kfp.runs.lookup`: GET
/apis/v2beta1/runs/<run id>) when the pod can reach it; otherwise `kdflow.lookup_error` says why.

The state strings differ by runner: the KFP backend sends MLMD execution states (`COMPLETE`,
`FAILED`, `CANCELED`, `CACHED`, ...; 2.14+ maps its task states to those, passing others such as
`CANCELING` through by name), kfp.local and Vertex send `SUCCEEDED` / `FAILED` / `CANCELLED`.
"""

from __future__ import annotations

from typing import Any

import yaml

PIPELINE_STATUS_TAG = "kdflow.pipeline_status"
SUCCEEDED = frozenset({"COMPLETE", "SUCCEEDED", "CACHED"})
CANCELED = frozenset({"CANCELED", "CANCELLED", "CANCELING", "CANCELLING"})


def outcome(state: str) -> str:
    """The MLflow run status for a KFP final state: FINISHED, KILLED (canceled) or FAILED (the rest,
    including states a newer backend may add: an unknown end is not a success)."""
    state = state.upper()
    if state in SUCCEEDED:
        return "FINISHED"
    return "KILLED" if state in CANCELED else "FAILED"


def record(params_yaml: str, status: dict[str, Any], run_id: str = "") -> dict[str, str]:
    """`status` is KFP's PipelineTaskFinalStatus as a dict (state, pipeline_job_resource_name,
    pipeline_task_name, error_code, error_message); `run_id` the KFP run's id, to read the failed
    task from the run API. Never validates params: it must work precisely when the params were what
    broke the run."""
    import mlflow

    from kdflow import tracking
    from kdflow.kfp import runs

    state = str(status.get("state") or "UNKNOWN")
    try:
        params = yaml.safe_load(params_yaml) or {}
    except yaml.YAMLError:
        params = {}
    register = params.get("register") if isinstance(params, dict) else None
    experiment = (register or {}).get("experiment") or "kdflow"
    tags = {PIPELINE_STATUS_TAG: state, "kdflow.stage": "pipeline",
            "kdflow.kfp_run": str(status.get("pipeline_job_resource_name") or ""),
            "kdflow.kfp_run_id": run_id, "kdflow.kfp_task": str(status.get("pipeline_task_name") or "")}
    error = str(status.get("error_message") or "")  # empty from the KFP backend; kfp.local fills it
    if outcome(state) != "FINISHED":
        found = runs.lookup(run_id)
        if found.get("failed_tasks"):
            tags["kdflow.failed_task"] = ", ".join(t["task"] for t in found["failed_tasks"])[:5000]
            error = error or runs.describe(found["failed_tasks"])
        if found.get("lookup_error"):
            tags["kdflow.lookup_error"] = found["lookup_error"]
    if error:
        tags["kdflow.error"] = error[:5000]
    mlflow.set_tracking_uri(tracking.tracking_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="pipeline", tags=tags) as run:
        run_id = run.info.run_id
    end = outcome(state)
    if end != "FINISHED":
        tracking.client().set_terminated(run_id, status=end)
    return {"run_id": run_id, "state": state, "mlflow_status": end}
