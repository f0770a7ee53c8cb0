"""kdflow.stages.train_baseline: the student architecture on hard labels only (the no-KD reference)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def train_baseline(params: Input[Artifact], data: Input[Dataset], model: Output[Model]):
    """kdflow.stages.train_baseline."""
    from pathlib import Path

    from kdflow.kfp.params import stage_params
    from kdflow.stages import train_baseline as stage

    summary = stage.run(stage_params(params.path), {"data": Path(data.path)}, {"model": Path(model.path)})
    model.metadata["best_val_acc"] = summary["best_val_acc"]
