from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def record_status(params: dict, status: PipelineTaskFinalStatus):
    """Exit handler: an MLflow run recording the pipeline's final state (FAILED runs with the error)."""
    from kdflow.cluster.run_status import record

    print(record(params, {"state": status.state, "pipeline_job_resource_name": status.pipeline_job_resource_name,
                          "pipeline_task_name": status.pipeline_task_name, "error_code": status.error_code,
                          "error_message": status.error_message}))
