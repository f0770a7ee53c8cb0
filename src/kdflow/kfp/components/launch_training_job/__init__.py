from kdflow.kfp.components.launch_training_job.component import launch_training_job

__all__ = ["launch_training_job"]
