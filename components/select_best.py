from kfp import dsl
from kfp.dsl import Input, Model, Output

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def select_best(params: dict, candidates: Input[list[Model]], best: Output[Model]):
    """kdflow.stages.select_best: the candidate with the best validation accuracy (never test)."""
    from pathlib import Path

    from kdflow.cluster import stage_params
    from kdflow.stages import select_best as stage

    summary = stage.run(stage_params(params), {f"candidate_{i}": Path(m.path) for i, m in enumerate(candidates)},
                        {"model": Path(best.path)})
    best.metadata.update(selected=summary["selected"], val_acc=summary["val_acc"])
