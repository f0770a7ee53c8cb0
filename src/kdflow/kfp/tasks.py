"""Apply the `kubeflow` settings to a compiled pipeline task (kfp + kfp-kubernetes).

Compile-time only: kfp.local ignores the Kubernetes platform config, so the same pipeline
runs locally unchanged.
"""

from __future__ import annotations

from kdflow.kfp.schema import Kubeflow


def configure(task, stage: str, settings: Kubeflow, image: str, cache: bool = True):
    """Image, resources, placement, Secrets-backed env, storage and retries for one task."""
    from kfp import kubernetes

    task.set_container_image(image)
    task.set_display_name(stage.replace("_", "-"))
    task.set_caching_options(enable_caching=cache)
    place = settings.placement(stage)
    r = place.resources
    for value, setter in ((r.cpu_request, task.set_cpu_request), (r.cpu_limit, task.set_cpu_limit),
                          (r.memory_request, task.set_memory_request), (r.memory_limit, task.set_memory_limit)):
        if value is not None:
            setter(value)
    if r.accelerator_type and r.accelerator_count:
        task.set_accelerator_type(r.accelerator_type).set_accelerator_limit(r.accelerator_count)
    for key, value in place.node_selector.items():
        kubernetes.add_node_selector(task, key, value)
    for t in place.tolerations:
        kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect,
                                  toleration_seconds=t.toleration_seconds)
    for s in settings.secrets_for_backend():
        kubernetes.use_secret_as_env(task, s.secret, s.env, optional=s.optional)
    for name, value in settings.env.items():
        task.set_env_variable(name, value)
    cache_dir = settings.data_cache
    if cache_dir.pvc and stage in cache_dir.stages:
        kubernetes.mount_pvc(task, cache_dir.pvc, cache_dir.mount_path)
        task.set_env_variable("KDFLOW_DATA_CACHE", cache_dir.mount_path)
    if settings.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, settings.image_pull_secrets)
    if settings.security_context():
        kubernetes.set_security_context(task, run_as_user=settings.run_as_user, run_as_non_root=True)
    if settings.retries:
        task.set_retry(settings.retries)
    return task
