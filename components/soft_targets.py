from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def soft_targets(params: dict, data: Input[Dataset], data_hash: str, teacher: Input[Model], shard_index: int,
                 num_shards: int, store: Output[Dataset]):
    """kdflow.stages.soft_targets for one contiguous shard of the samples."""
    from pathlib import Path

    from kdflow.cluster import stage_params
    from kdflow.cluster.artifacts import check_data
    from kdflow.stages import soft_targets as stage

    summary = stage.run(stage_params(params), {"data": check_data(data.path, data_hash),
                                               "teacher": Path(teacher.path)},
                        {"soft_targets": Path(store.path)}, shard_index=shard_index, num_shards=num_shards)
    store.metadata.update(shard_index=shard_index, samples=summary["samples"], checksum=summary["checksum"])
