"""kdflow.stages.soft_targets for one contiguous shard of the samples."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def soft_targets(params: Input[Artifact], data: Input[Dataset], teacher: Input[Model], shard_index: int,
                 num_shards: int, store: Output[Dataset]):
    """kdflow.stages.soft_targets(shard_index, num_shards): teacher logits of one slice of the samples."""
    from pathlib import Path

    from kdflow.kfp.params import stage_params
    from kdflow.stages import soft_targets as stage

    summary = stage.run(stage_params(params.path), {"data": Path(data.path), "teacher": Path(teacher.path)},
                        {"soft_targets": Path(store.path)}, shard_index=shard_index, num_shards=num_shards)
    store.metadata.update(shard_index=shard_index, samples=summary["samples"], checksum=summary["checksum"])
