"""Running kdflow on Kubernetes: the `kubeflow` params section, its application to KFP tasks,
params for pipeline steps, the multi-node training job and the pipeline's exit status.

Exports resolve lazily so that kdflow.config can import `kdflow.cluster.schema.Kubeflow`
without a cycle (kdflow.cluster.params imports kdflow.config).
"""

_EXPORTS = {"Kubeflow": "kdflow.cluster.schema", "load_raw": "kdflow.config",
            "restore_ints": "kdflow.cluster.params", "split": "kdflow.cluster.params",
            "stage_params": "kdflow.cluster.params"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kdflow.cluster' has no attribute {name!r}")
