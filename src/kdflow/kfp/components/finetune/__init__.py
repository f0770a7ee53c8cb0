from kdflow.kfp.components.finetune.component import finetune

__all__ = ["finetune"]
