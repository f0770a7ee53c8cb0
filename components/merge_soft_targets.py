from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def merge_soft_targets(params: dict, shards: Input[list[Dataset]], store: Output[Dataset]):
    """kdflow.stages.merge_soft_targets: the shard stores of one teacher → one store."""
    from pathlib import Path

    from kdflow.cluster import stage_params
    from kdflow.stages import merge_soft_targets as stage

    summary = stage.run(stage_params(params), {f"shard_{i}": Path(s.path) for i, s in enumerate(shards)},
                        {"soft_targets": Path(store.path)})
    store.metadata.update(samples=summary["samples"], checksum=summary["checksum"])
