from kdflow.kfp.components.prepare.component import prepare

__all__ = ["prepare"]
