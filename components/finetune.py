from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def finetune(params: dict, data: Input[Dataset], data_hash: str, student: Input[Model], model: Output[Model]):
    """kdflow.stages.finetune: optional hard-label fine-tuning (finetune.train.epochs 0 = pass-through)."""
    from pathlib import Path

    from kdflow.cluster import stage_params
    from kdflow.cluster.artifacts import check_data
    from kdflow.stages import finetune as stage

    stage.run(stage_params(params), {"data": check_data(data.path, data_hash), "student": Path(student.path)},
              {"model": Path(model.path)})
