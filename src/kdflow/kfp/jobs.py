"""Submit the teacher training job, wait for it, surface its status and logs, fail with its reason.

`job_state` and `pod_problems` are pure (unit-tested on recorded status objects); `launch`
needs a cluster: the `kubernetes` client with in-cluster config, RBAC from manifests/kfp.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import yaml

from kdflow.errors import KdflowError
from kdflow.kfp import training_job
from kdflow.kfp.params import stage_params
from kdflow.kfp.schema import Kubeflow

API = {"TrainJob": ("trainer.kubeflow.org", "v1alpha1", "trainjobs"),
       "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs")}
POD_SELECTOR = {"TrainJob": "jobset.sigs.k8s.io/jobset-name={name}",
                "PyTorchJob": "training.kubeflow.org/job-name={name}"}
DONE = {"TrainJob": ("Complete", "Failed"), "PyTorchJob": ("Succeeded", "Failed")}
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def job_state(kind: str, obj: dict) -> tuple[str, str]:
    """('running' | 'succeeded' | 'failed', 'Reason: message') from a job's status conditions."""
    ok, bad = DONE[kind]
    conds = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []
             if str(c.get("status")) == "True"}
    for kind_, state in ((bad, "failed"), (ok, "succeeded")):
        if kind_ in conds:
            c = conds[kind_]
            return state, f"{c.get('reason', kind_)}: {c.get('message', '')}".rstrip(": ")
    last = ((obj.get("status") or {}).get("conditions") or [{}])[-1]
    return "running", str(last.get("type") or "Pending")


def pod_problems(pods: list[dict]) -> list[str]:
    """Why pods are failing (OOMKilled, exit codes, image pulls, unschedulable), one line per pod."""
    out = []
    for pod in pods:
        name, status = pod["metadata"]["name"], pod.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            term, wait = state.get("terminated"), state.get("waiting")
            if term and term.get("exitCode", 0) != 0:
                out.append(f"{name}: {term.get('reason', 'Error')} (exit code {term.get('exitCode')})")
            elif wait and wait.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                out.append(f"{name}: {wait.get('reason')}: {wait.get('message', '')}".rstrip(": "))
        for c in status.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                out.append(f"{name}: unschedulable: {c.get('message', '')}")
    return out


def _clients():
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api(), client.ApiClient()


def owner_reference(core, namespace: str) -> dict | None:
    """An ownerReference to this (launcher) pod when the job runs in its namespace: deleting the
    pipeline run's pods then deletes the job and its pods too. None outside a pod."""
    pod_name = os.environ.get("HOSTNAME")
    if not pod_name or not NAMESPACE_FILE.is_file() or NAMESPACE_FILE.read_text().strip() != namespace:
        return None
    try:
        pod = core.read_namespaced_pod(pod_name, namespace)
    except Exception:  # no RBAC to read pods, or not a pod: the launcher still deletes the job itself
        return None
    return {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod.metadata.uid,
            "blockOwnerDeletion": False}


def run(manifest: dict, timeout: int, poll: int, log=print) -> str:
    """Create the job, poll until it ends, print its pods' log tails and delete it (its pods go with
    it); on failure raise with the job's reason, pod problems and the tail of the failing pod's log."""
    kind, meta = manifest["kind"], manifest["metadata"]
    name, ns = meta["name"], meta["namespace"]
    group, version, plural = API[kind]
    objects, core, api = _clients()
    owner = owner_reference(core, ns)
    if owner:
        meta["ownerReferences"] = [owner]
    try:
        objects.create_namespaced_custom_object(group, version, ns, plural, manifest)
        log(f"{kind} {ns}/{name} created")
    except Exception as exc:  # kubernetes ApiException; 409: a retried launcher finds the job it started
        if getattr(exc, "status", None) != 409:
            raise
        log(f"{kind} {ns}/{name} exists (this launcher was retried): following it")
    try:
        state, detail = _wait(objects, kind, name, ns, timeout, poll, log)
        pods = [api.sanitize_for_serialization(p) for p in
                core.list_namespaced_pod(ns, label_selector=POD_SELECTOR[kind].format(name=name)).items]
        tail = _log_tail(core, ns, pods, training_job.CONTAINER[kind])
        log(tail)
    finally:  # success, failure, timeout or a killed step: never leave GPUs held by a finished job
        try:
            objects.delete_namespaced_custom_object(group, version, ns, plural, name,
                                                    propagation_policy="Background")
            log(f"{kind} {ns}/{name} deleted")
        except Exception as exc:  # already gone, or no permission: the ownerReference/TTL still cleans up
            log(f"{kind} {ns}/{name} not deleted: {exc}")
    if state == "failed":
        problems = "; ".join(pod_problems(pods)) or "no pod-level reason"
        raise KdflowError(f"{kind} {name} failed: {detail} [{problems}]\n{tail}")
    return name


def _wait(objects, kind: str, name: str, ns: str, timeout: int, poll: int, log) -> tuple[str, str]:
    group, version, plural = API[kind]
    deadline, last = time.monotonic() + timeout, None
    while True:
        obj = objects.get_namespaced_custom_object(group, version, ns, plural, name)
        state, detail = job_state(kind, obj)
        if (state, detail) != last:
            log(f"{kind} {name}: {state} ({detail})")
            last = (state, detail)
        if state != "running":
            return state, detail
        if time.monotonic() > deadline:
            return "failed", f"Timeout: no completion within {timeout}s (job deleted)"
        time.sleep(poll)


def _log_tail(core, ns: str, pods: list[dict], container: str, lines: int = 80) -> str:
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    out = []
    for pod in (failed or pods)[:2]:
        name = pod["metadata"]["name"]
        try:
            text = core.read_namespaced_pod_log(name, ns, container=container, tail_lines=lines)
        except Exception as exc:  # log retrieval must never hide the job's own outcome
            text = f"(logs unavailable: {exc})"
        out.append(f"--- {name} (last {lines} lines) ---\n{text}")
    return "\n".join(out)


def namespace(settings: Kubeflow) -> str:
    if settings.training_job.namespace:
        return settings.training_job.namespace
    if NAMESPACE_FILE.is_file():
        return NAMESPACE_FILE.read_text().strip()
    return "default"


def stage_files(kf: Kubeflow, params: str | Path | dict, overrides: dict, data: str, name: str) -> Path:
    """Put the dataset and the validated params where the job's command expects them (the shared PVC)."""
    cfg = stage_params(params, overrides)
    wd = Path(training_job.workdir(kf, name))
    # a retried launcher (same run, same candidate: same name) keeps the checkpoints beside the data
    shutil.copytree(data, wd / "data", dirs_exist_ok=True)
    (wd / "params.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return wd


def launch(params: str, overrides: dict, settings: str, image: str, data: str, model: str, run_id: str = "") -> str:
    """Stage the dataset and params on the shared PVC, run the job, copy the trained teacher to `model`.
    `run_id`: the KFP run's id; the job name (and its checkpoint directory) follows from it and the
    candidate's overrides, so a retry of this step resumes (no run id: a fresh name)."""
    kf = Kubeflow.model_validate_json(settings)
    name = training_job.job_name(run_id or uuid.uuid4().hex, overrides)
    wd = stage_files(kf, params, overrides, data, name)
    run(training_job.render(kf, image, name, namespace(kf)), kf.training_job.timeout_seconds,
        kf.training_job.poll_seconds)
    shutil.copytree(wd / "model", model)
    shutil.rmtree(wd, ignore_errors=True)
    return name
