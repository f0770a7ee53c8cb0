"""The teacher as a multi-node Kubeflow Trainer TrainJob or Training Operator PyTorchJob running
kdflow train-teacher under torchrun; waits for it, deletes it, fails with the job's reason."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kdflow.kfp.image import COMPONENT


@dsl.component(**COMPONENT)
def launch_training_job(params: Input[Artifact], overrides: dict, settings: str, image: str, data: Input[Dataset],
                        model: Output[Model], run_id: str = ""):
    """kdflow.kfp.jobs.launch; `settings` is the `kubeflow` params section as JSON, `run_id` the KFP run
    (the job and its checkpoints are named after it, so a retried step resumes)."""
    from kdflow.kfp.jobs import launch

    launch(params.path, overrides, settings, image, data.path, model.path, run_id)
