"""kdflow.stages.prepare -> dataset/. Cached on `data_key`, so an unchanged re-run reuses the dataset
artifact and every downstream step's cache hits."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def prepare(params: Input[Artifact], data_key: str, scratch: str, data: Output[Dataset]):
    """kdflow.stages.prepare; `data_key` (from data_version) keys the cache, `scratch` (the KFP workspace,
    when configured) holds fetched data instead of the node's ephemeral disk."""
    from pathlib import Path

    from kdflow.kfp.artifacts import dataset_metadata, use_scratch
    from kdflow.kfp.params import stage_params
    from kdflow.stages import prepare as stage

    use_scratch(scratch)
    stage.run(stage_params(params.path), {}, {"data": Path(data.path)})
    data.metadata.update(dataset_metadata(data.path), data_key=data_key)
