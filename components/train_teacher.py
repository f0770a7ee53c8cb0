from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def train_teacher(params: dict, overrides: dict, data: Input[Dataset], data_hash: str, model: Output[Model]):
    """kdflow.stages.train_teacher; `overrides` (dotted keys) make teacher candidates differ."""
    from pathlib import Path

    from kdflow.cluster import stage_params
    from kdflow.cluster.artifacts import check_data
    from kdflow.stages import train_teacher as stage

    summary = stage.run(stage_params(params, overrides), {"data": check_data(data.path, data_hash)},
                        {"model": Path(model.path)})
    model.metadata["best_val_acc"] = summary["best_val_acc"]
