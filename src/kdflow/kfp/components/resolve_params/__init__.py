from kdflow.kfp.components.resolve_params.component import resolve_params

__all__ = ["resolve_params"]
