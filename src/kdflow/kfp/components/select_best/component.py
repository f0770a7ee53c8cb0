"""kdflow.stages.select_best: the candidate with the best validation accuracy (never test)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def select_best(params: Input[Artifact], candidates: Input[list[Model]], best: Output[Model]):
    """kdflow.stages.select_best over the collected outputs of a ParallelFor."""
    from pathlib import Path

    from kdflow.kfp.params import stage_params
    from kdflow.stages import select_best as stage

    summary = stage.run(stage_params(params.path), {f"candidate_{i}": Path(m.path) for i, m in enumerate(candidates)},
                        {"model": Path(best.path)})
    best.metadata.update(selected=summary["selected"], val_acc=summary["val_acc"])
