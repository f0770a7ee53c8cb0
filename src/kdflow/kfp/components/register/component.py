"""kdflow.stages.register: the student into the MLflow registry, promoted to champion (gate passed)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def register(params: Input[Artifact], data: Input[Dataset], student: Input[Model], teacher: Input[Model],
             metrics: Input[Artifact], registration: Output[Artifact]):
    """kdflow.stages.register (a side effect: never cached)."""
    from pathlib import Path

    from kdflow.kfp.params import stage_params
    from kdflow.stages import register as stage

    inputs = {"data": Path(data.path), "student": Path(student.path), "teacher": Path(teacher.path),
              "metrics": Path(metrics.path)}
    summary = stage.run(stage_params(params.path), inputs, {"registration": Path(registration.path)})
    registration.metadata.update(model_name=summary["model_name"], version=summary["version"],
                                 promoted=summary["promoted"])
