"""The pipeline's exit handler: one MLflow run per pipeline run recording how it ended.

A failed KFP run otherwise leaves only the stage runs that finished, which look like a
healthy partial run; this run carries the final state, the failing task and its error.
"""

from __future__ import annotations

from typing import Any

PIPELINE_STATUS_TAG = "kdflow.pipeline_status"


def record(params: dict, status: dict[str, Any]) -> dict[str, str]:
    """`status` is KFP's PipelineTaskFinalStatus as a dict (state, pipeline_job_resource_name,
    pipeline_task_name, error_code, error_message). Never validates params: it must work
    precisely when the params were what broke the run."""
    import mlflow

    from kdflow import tracking

    state = str(status.get("state") or "UNKNOWN")
    experiment = (params.get("register") or {}).get("experiment") or "kdflow"
    error = str(status.get("error_message") or "")[:5000]
    tags = {PIPELINE_STATUS_TAG: state, "kdflow.stage": "pipeline",
            "kdflow.kfp_run": str(status.get("pipeline_job_resource_name") or ""),
            "kdflow.kfp_task": str(status.get("pipeline_task_name") or "")}
    if error:
        tags["kdflow.error"] = error
    mlflow.set_tracking_uri(tracking.tracking_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="pipeline", tags=tags) as run:
        run_id = run.info.run_id
    if state != "SUCCEEDED":
        tracking.client().set_terminated(run_id, status="FAILED")
    return {"run_id": run_id, "state": state}
