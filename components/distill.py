from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def distill(params: dict, trial: dict, data: Input[Dataset], data_hash: str, soft_targets: Input[Dataset],
            teacher: Input[Model], model: Output[Model]):
    """kdflow.stages.distill; `trial` overrides the `distill` section (a sweep trial: {temperature, alpha})."""
    from pathlib import Path

    from kdflow.cluster import stage_params
    from kdflow.cluster.artifacts import check_data
    from kdflow.stages import distill as stage

    inputs = {"data": check_data(data.path, data_hash), "soft_targets": Path(soft_targets.path),
              "teacher": Path(teacher.path)}
    summary = stage.run(stage_params(params, trial, section="distill"), inputs, {"model": Path(model.path)})
    model.metadata.update(trial=trial, best_val_acc=summary["best_val_acc"])
