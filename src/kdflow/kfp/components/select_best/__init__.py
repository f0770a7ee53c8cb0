from kdflow.kfp.components.select_best.component import select_best

__all__ = ["select_best"]
