"""Render the multi-node teacher training job: a Kubeflow Trainer `TrainJob` (runtime
`torch-distributed`) or a Training Operator v1 `PyTorchJob` with `nprocPerNode`.

Both run `kdflow train-teacher` under torchrun; the operator supplies the rendezvous through
`PET_*` environment variables, torchrun sets RANK/WORLD_SIZE, Lightning detects torchrun and
`lit/fit.py::_check_world` checks WORLD_SIZE == num_nodes × devices. Data, params, checkpoints
and the trained model live on the shared PVC (`kubeflow.data_cache`).

A TrainJob's pod-level settings (the PVC, placement, pull secrets) go where the targeted Trainer
release reads them (`training_job.trainer_version`); a field an older or newer controller does not
know is dropped silently, so the name must match the cluster:
v2.0 `podSpecOverrides`, v2.1 `podTemplateOverrides`, v2.2 and v2.3 `runtimePatches`.

The job's name, and so its work directory and checkpoints on the PVC, is a function of the pipeline
run and the teacher candidate (`job_name`): a retried launcher finds the job it started (or its
checkpoints) instead of starting over.
"""

from __future__ import annotations

import copy
import hashlib
import json

from kdflow.kfp.schema import Kubeflow, Placement

CONTAINER = {"TrainJob": "node", "PyTorchJob": "pytorch"}
LABELS = {"app.kubernetes.io/part-of": "kdflow", "app.kubernetes.io/component": "train-teacher"}
STAGE = "train_teacher"  # the job's pods get the teacher's placement; the launcher pod its own
# v2.2+ runtimePatches are keyed by their owner; the webhook refuses a manager that is not a domain-prefixed
# path (validation.IsDomainPrefixedPath in pkg/runtime/framework/plugins/jobset/jobset.go)
PATCH_MANAGER = "kdflow.io/launch-training-job"


def job_name(run_id: str, overrides: dict) -> str:
    """Stable per pipeline run and teacher candidate (a DNS-1035 label, as the JobSet's Service needs)."""
    key = json.dumps({"run": run_id, "overrides": overrides}, sort_keys=True)
    return f"kdflow-teacher-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def workdir(settings: Kubeflow, name: str) -> str:
    return f"{settings.data_cache.mount_path.rstrip('/')}/jobs/{name}"


def command(settings: Kubeflow, name: str) -> list[str]:
    """torchrun → `python -m kdflow.cli train-teacher` with devices/nodes/strategy pinned to the job shape."""
    job, wd = settings.training_job, workdir(settings, name)
    gpu = settings.placement(STAGE).resources.accelerator_count > 0
    sets = {"teacher.train.num_nodes": job.num_nodes, "teacher.train.devices": job.procs_per_node,
            "teacher.train.strategy": "ddp", "teacher.train.accelerator": "gpu" if gpu else "cpu",
            "teacher.train.progress_bar": "false"}
    args = ["torchrun", "--module", "kdflow.cli", "train-teacher", "--params", f"{wd}/params.yaml",
            "--data", f"{wd}/data", "--out", f"{wd}/model", "--ckpt-dir", f"{wd}/checkpoints"]
    for key, value in sets.items():
        args += ["-S", f"{key}={value}"]
    return args


def env(settings: Kubeflow) -> list[dict]:
    out = [{"name": k, "value": v} for k, v in settings.env.items()]
    out.append({"name": "KDFLOW_DATA_CACHE", "value": settings.data_cache.mount_path})
    for s in settings.secrets:
        for key, var in s.env.items():
            ref = {"name": s.secret, "key": key}
            if s.optional:
                ref["optional"] = True
            out.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    return out


def resources(place: Placement) -> dict:
    r = place.resources
    requests = {k: v for k, v in (("cpu", r.cpu_request), ("memory", r.memory_request)) if v}
    limits = {k: v for k, v in (("cpu", r.cpu_limit), ("memory", r.memory_limit)) if v}
    if r.accelerator_type and r.accelerator_count:
        limits[r.accelerator_type] = str(r.accelerator_count)
        requests[r.accelerator_type] = str(r.accelerator_count)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _pod_extras(settings: Kubeflow, place: Placement, fields: frozenset[str]) -> dict:
    """Pod-level fields, restricted to `fields`: what the target API accepts (a TrainJob override is a
    subset of a pod spec; a PyTorchJob template is a full one)."""
    pod: dict = {"volumes": [{"name": "kdflow-data",
                              "persistentVolumeClaim": {"claimName": settings.data_cache.pvc}}]}
    if place.node_selector:
        pod["nodeSelector"] = dict(place.node_selector)
    if place.tolerations:
        pod["tolerations"] = [{_camel(k): v for k, v in t.model_dump(exclude_none=True).items()}
                              for t in place.tolerations]
    if settings.training_job.service_account:
        pod["serviceAccountName"] = settings.training_job.service_account
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    security = {k: v for k, v in (("runAsUser", settings.run_as_user), ("fsGroup", settings.fs_group)) if v is not None}
    if security:
        # fsGroup: the PVC's files become writable by the image's non-root user on any storage class
        pod["securityContext"] = {**security, "runAsNonRoot": True} if settings.run_as_user is not None else security
    return {k: v for k, v in pod.items() if k in fields}


_PATCH_FIELDS = frozenset({"volumes", "nodeSelector", "tolerations", "serviceAccountName", "imagePullSecrets",
                           "securityContext"})
# pod fields each target accepts (kubeflow-trainer-api models of each release; PyTorchJob: a PodSpec)
POD_FIELDS = {
    "v2.0": frozenset({"volumes", "nodeSelector", "tolerations", "serviceAccountName"}),
    "v2.1": frozenset({"volumes", "nodeSelector", "tolerations", "serviceAccountName", "imagePullSecrets"}),
    "v2.2": _PATCH_FIELDS, "v2.3": _PATCH_FIELDS, "PyTorchJob": _PATCH_FIELDS,
}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


def _mounts(settings: Kubeflow) -> list[dict]:
    return [{"name": "kdflow-data", "mountPath": settings.data_cache.mount_path}]


def render(settings: Kubeflow, image: str, name: str, namespace: str, owner: dict | None = None) -> dict:
    """The job manifest (a dict ready for the Kubernetes API or `kubectl create -f`). `owner`: an
    ownerReference (the launcher pod), so Kubernetes deletes the job with the pipeline run's pods."""
    job = settings.training_job
    meta = {"name": name, "namespace": namespace, "labels": dict(LABELS)}
    if owner:
        meta["ownerReferences"] = [owner]
    place = settings.placement(STAGE)
    return (_trainjob if job.kind == "TrainJob" else _pytorchjob)(settings, image, meta, place, name)


def _trainjob(settings: Kubeflow, image: str, meta: dict, place: Placement, name: str) -> dict:
    job, version = settings.training_job, settings.training_job.trainer_version
    pod = _pod_extras(settings, place, POD_FIELDS[version])
    container = {"name": CONTAINER["TrainJob"], "volumeMounts": _mounts(settings)}
    target = [{"name": "node"}]
    spec: dict = {
        "runtimeRef": {"name": job.runtime, "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime"},
        "trainer": {"image": image, "command": command(settings, name), "env": env(settings),
                    "numNodes": job.num_nodes, "numProcPerNode": job.procs_per_node,
                    "resourcesPerNode": resources(place)},
    }
    if version == "v2.0":
        spec["podSpecOverrides"] = [{"targetJobs": target, "containers": [container], **pod}]
    elif version == "v2.1":
        spec["podTemplateOverrides"] = [{"targetJobs": target, "spec": {"containers": [container], **pod}}]
    else:
        pod_template = {"spec": {"containers": [container], **pod}}
        replicated = {"name": "node", "template": {"spec": {"template": pod_template}}}
        spec["runtimePatches"] = [{"manager": PATCH_MANAGER, "trainingRuntimeSpec": {
            "template": {"spec": {"replicatedJobs": [replicated]}}}}]
        spec["activeDeadlineSeconds"] = job.timeout_seconds
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": meta, "spec": spec}


def _pytorchjob(settings: Kubeflow, image: str, meta: dict, place: Placement, name: str) -> dict:
    job = settings.training_job
    container = {"name": CONTAINER["PyTorchJob"], "image": image, "command": command(settings, name),
                 "env": env(settings), "resources": resources(place), "volumeMounts": _mounts(settings)}
    template = {"metadata": {"labels": dict(LABELS)},
                "spec": {"containers": [container], **_pod_extras(settings, place, POD_FIELDS["PyTorchJob"])}}
    # a failed pod restarts (up to backoff_limit times) and resumes from the checkpoints on the PVC
    restart = "OnFailure" if job.backoff_limit else "Never"
    replicas = {"Master": {"replicas": 1, "restartPolicy": restart, "template": template}}
    if job.num_nodes > 1:
        replicas["Worker"] = {"replicas": job.num_nodes - 1, "restartPolicy": restart,
                              "template": copy.deepcopy(template)}
    # Running: pods still up when the job ends are deleted (a hung worker never holds GPUs); finished
    # pods stay for their logs until the launcher deletes the job, or the TTL does if it cannot
    return {
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": meta,
        "spec": {"nprocPerNode": str(job.procs_per_node),
                 "runPolicy": {"backoffLimit": job.backoff_limit, "activeDeadlineSeconds": job.timeout_seconds,
                               "cleanPodPolicy": "Running", "ttlSecondsAfterFinished": job.ttl_seconds},
                 "pytorchReplicaSpecs": replicas},
    }
