from kdflow.kfp.components.register.component import register

__all__ = ["register"]
