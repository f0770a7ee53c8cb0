from kdflow.kfp.components.gate.component import gate

__all__ = ["gate"]
