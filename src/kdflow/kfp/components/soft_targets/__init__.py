from kdflow.kfp.components.soft_targets.component import soft_targets

__all__ = ["soft_targets"]
