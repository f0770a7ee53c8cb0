"""kdflow on Kubeflow: the `kubeflow` params section (schema), params as they travel through a run,
the KFP components and pipeline, compile / run-local / submit, the multi-node training job, the
exit handler's run status, and `kdflow pipeline` (cli).

Nothing is imported here: kdflow.config imports kdflow.kfp.schema, which needs only pydantic, so
the package imports without kfp and without a cycle.
"""
