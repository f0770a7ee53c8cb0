"""kdflow.stages.finetune: optional hard-label fine-tuning (finetune.train.epochs 0 = pass-through)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def finetune(params: Input[Artifact], data: Input[Dataset], student: Input[Model], model: Output[Model]):
    """kdflow.stages.finetune."""
    from pathlib import Path

    from kdflow.kfp.params import stage_params
    from kdflow.stages import finetune as stage

    stage.run(stage_params(params.path), {"data": Path(data.path), "student": Path(student.path)},
              {"model": Path(model.path)})
