"""Exit handler: an MLflow run recording the pipeline's final state (FAILED/KILLED runs with the failed task
and its message when the KFP run API answers)."""

from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def record_status(params_yaml: str, status: PipelineTaskFinalStatus, run_id: str = ""):
    """kdflow.kfp.run_status.record; reads the raw params_yaml (never validated: it may be what broke the run)."""
    from kdflow.kfp.run_status import record

    print(record(params_yaml, {"state": status.state, "pipeline_job_resource_name": status.pipeline_job_resource_name,
                               "pipeline_task_name": status.pipeline_task_name, "error_code": status.error_code,
                               "error_message": status.error_message}, run_id))
