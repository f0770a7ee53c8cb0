from kdflow.kfp.components.merge_soft_targets.component import merge_soft_targets

__all__ = ["merge_soft_targets"]
