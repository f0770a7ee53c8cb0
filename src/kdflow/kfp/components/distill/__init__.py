from kdflow.kfp.components.distill.component import distill

__all__ = ["distill"]
