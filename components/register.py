from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def gate(params: dict, metrics: Input[Artifact], checks: Output[Metrics]) -> bool:
    """kdflow.stages.register.gate on the evaluate metrics; the pipeline's dsl.If reads the result."""
    import json
    from pathlib import Path

    from kdflow.cluster import stage_params
    from kdflow.stages.register import gate as register_gate

    results = register_gate(stage_params(params), json.loads((Path(metrics.path) / "metrics.json").read_text()))
    for name, passed in results.items():
        checks.log_metric(name, float(passed))
    return all(results.values())


@dsl.component(**KDFLOW)
def register(params: dict, data: Input[Dataset], data_hash: str, student: Input[Model], teacher: Input[Model],
             metrics: Input[Artifact], registration: Output[Artifact]):
    """kdflow.stages.register: the student into the MLflow registry, promoted to champion (gate passed)."""
    from pathlib import Path

    from kdflow.cluster import stage_params
    from kdflow.cluster.artifacts import check_data
    from kdflow.stages import register as stage

    inputs = {"data": check_data(data.path, data_hash), "student": Path(student.path),
              "teacher": Path(teacher.path), "metrics": Path(metrics.path)}
    summary = stage.run(stage_params(params), inputs, {"registration": Path(registration.path)})
    registration.metadata.update(model_name=summary["model_name"], version=summary["version"],
                                 promoted=summary["promoted"])
