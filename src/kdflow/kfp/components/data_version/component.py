"""The key `prepare` is cached on: the commit a DVC revision resolves to, or the hash of local data
files (never cached itself: it is what notices that data moved)."""

from kfp import dsl
from kfp.dsl import Artifact, Input

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def data_version(params: Input[Artifact]) -> str:
    """kdflow.kfp.data_key.data_key of the run's data section."""
    from kdflow.kfp.data_key import data_key
    from kdflow.kfp.params import stage_params

    key = data_key(stage_params(params.path))
    print(key)
    return key["key"]
