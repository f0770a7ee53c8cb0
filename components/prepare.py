from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def prepare(params: dict, data: Output[Dataset]) -> str:
    """kdflow.stages.prepare → dataset/. Returns the content hash that keys every downstream step's cache."""
    from pathlib import Path

    from kdflow.cluster import stage_params
    from kdflow.cluster.artifacts import dataset_metadata
    from kdflow.stages import prepare as stage

    summary = stage.run(stage_params(params), {}, {"data": Path(data.path)})
    data.metadata.update(dataset_metadata(data.path))
    return summary["hash"]
