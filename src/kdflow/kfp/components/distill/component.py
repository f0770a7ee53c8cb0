"""kdflow.stages.distill; one sweep trial (overrides of the `distill` section)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def distill(params: Input[Artifact], trial: dict, data: Input[Dataset], soft_targets: Input[Dataset],
            teacher: Input[Model], model: Output[Model]):
    """kdflow.stages.distill; `trial` overrides the `distill` section (e.g. {temperature: 2, alpha: 0.5})."""
    from pathlib import Path

    from kdflow.kfp.params import stage_params
    from kdflow.stages import distill as stage

    inputs = {"data": Path(data.path), "soft_targets": Path(soft_targets.path), "teacher": Path(teacher.path)}
    summary = stage.run(stage_params(params.path, trial, section="distill"), inputs, {"model": Path(model.path)})
    model.metadata.update(trial=trial, best_val_acc=summary["best_val_acc"])
