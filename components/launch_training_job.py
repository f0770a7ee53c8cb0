from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import KDFLOW


@dsl.component(**KDFLOW)
def launch_training_job(params: dict, overrides: dict, settings: str, image: str, data: Input[Dataset],
                        data_hash: str, model: Output[Model]):
    """The teacher as a multi-node TrainJob/PyTorchJob (kdflow train-teacher under torchrun); waits for it
    and fails with the job's reason. `settings` is the `kubeflow` params section as JSON (a KFP
    struct cannot hold its nulls)."""
    from kdflow.cluster.jobs import launch

    launch(params, overrides, settings, image, data.path, data_hash, model.path)
