"""kdflow.stages.merge_soft_targets: the shard stores of one teacher -> one store."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def merge_soft_targets(params: Input[Artifact], shards: Input[list[Dataset]], store: Output[Dataset]):
    """kdflow.stages.merge_soft_targets over the collected shard stores."""
    from pathlib import Path

    from kdflow.kfp.params import stage_params
    from kdflow.stages import merge_soft_targets as stage

    summary = stage.run(stage_params(params.path), {f"shard_{i}": Path(s.path) for i, s in enumerate(shards)},
                        {"soft_targets": Path(store.path)})
    store.metadata.update(samples=summary["samples"], checksum=summary["checksum"])
