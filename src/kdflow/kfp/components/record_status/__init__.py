from kdflow.kfp.components.record_status.component import record_status

__all__ = ["record_status"]
