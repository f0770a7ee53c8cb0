"""kdflow.stages.train_teacher in the step's pod; `overrides` make teacher candidates differ."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def train_teacher(params: Input[Artifact], overrides: dict, data: Input[Dataset], model: Output[Model]):
    """kdflow.stages.train_teacher; `overrides` are dotted keys (e.g. {seed: 1})."""
    from pathlib import Path

    from kdflow.kfp.params import stage_params
    from kdflow.stages import train_teacher as stage

    summary = stage.run(stage_params(params.path, overrides), {"data": Path(data.path)}, {"model": Path(model.path)})
    model.metadata["best_val_acc"] = summary["best_val_acc"]
