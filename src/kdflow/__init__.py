"""kdflow: knowledge distillation stages for DVC, Kubeflow Pipelines, MLflow and Prometheus."""

__version__ = "0.1.0"
