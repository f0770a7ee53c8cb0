"""The teacher's multi-node job rendered from params (TrainJob per Trainer release, PyTorchJob), checked
against each release's TrainJob schema, its status reading, and the manifests under
manifests/training and manifests/kfp."""

import gzip
import json
import shlex
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from kdflow.kfp import training_job
from kdflow.kfp.jobs import job_state, pod_problems, stage_files
from kdflow.kfp.schema import Kubeflow
from kdflow.kfp.training_job import render
from tests.helpers import REPO, tiny_dict
from tests.support import trainer_rules

TRAINER_SCHEMAS = REPO / "tests" / "data" / "trainer"  # extract.py there says where they come from
VERSIONS = ["v2.0", "v2.1", "v2.2", "v2.3"]
FIELD = {"v2.0": "podSpecOverrides", "v2.1": "podTemplateOverrides", "v2.2": "runtimePatches",
         "v2.3": "runtimePatches"}

IMAGE = "registry.example/kdflow:1"
SETTINGS = {
    "data_cache": {"pvc": "kdflow-data", "mount_path": "/mnt/kd"},
    "training_job": {"enabled": True, "num_nodes": 3, "procs_per_node": 2, "service_account": "trainer"},
    "stages": {"train_teacher": {"resources": {"cpu_request": "8", "memory_limit": "32Gi",
                                               "accelerator_type": "nvidia.com/gpu", "accelerator_count": 2},
                                 "node_selector": {"gpu": "a100"},
                                 "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}},
    "env": {"KDFLOW_LOG_LEVEL": "debug"},
}


def settings(**job) -> Kubeflow:
    raw = yaml.safe_load(yaml.safe_dump(SETTINGS))
    raw["training_job"].update(job)
    return Kubeflow.model_validate(raw)


def sets(command: list[str]) -> dict[str, str]:
    return dict(command[i + 1].split("=", 1) for i, a in enumerate(command) if a == "-S")


def check_command(command: list[str], workdir: str) -> None:
    assert command[:4] == ["torchrun", "--module", "kdflow.cli", "train-teacher"]
    args = " ".join(command)
    for flag in ("--params", "--data", "--out", "--ckpt-dir"):
        assert f"{flag} {workdir}/" in args
    assert sets(command) == {"teacher.train.num_nodes": "3", "teacher.train.devices": "2",
                             "teacher.train.strategy": "ddp", "teacher.train.accelerator": "gpu",
                             "teacher.train.progress_bar": "false"}


def check_env(env: list[dict]) -> None:
    by_name = {e["name"]: e for e in env}
    # the Secret's key is the env name: `kubectl create secret ... --from-literal=MLFLOW_TRACKING_URI=...`
    assert by_name["MLFLOW_TRACKING_URI"]["valueFrom"]["secretKeyRef"] == {"name": "kdflow-mlflow",
                                                                           "key": "MLFLOW_TRACKING_URI"}
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        assert by_name[var]["valueFrom"]["secretKeyRef"] == {"name": "kdflow-mlflow-auth", "key": var,
                                                             "optional": True}
    assert by_name["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert by_name["KDFLOW_DATA_CACHE"]["value"] == "/mnt/kd"
    assert by_name["KDFLOW_LOG_LEVEL"]["value"] == "debug"
    assert all("value" not in e for e in env if e["name"].startswith(("AWS_", "MLFLOW_")))


def trainer_schema(version: str) -> dict:
    return json.loads(gzip.decompress((TRAINER_SCHEMAS / f"trainjob-{version}.json.gz").read_bytes()))


def pod_overrides(job: dict, version: str) -> dict:
    """The pod-level settings of a TrainJob, wherever `version` puts them."""
    spec = job["spec"]
    if version == "v2.0":
        (o,) = spec["podSpecOverrides"]
        assert o["targetJobs"] == [{"name": "node"}]
        return o
    if version == "v2.1":
        (o,) = spec["podTemplateOverrides"]
        assert o["targetJobs"] == [{"name": "node"}]
        return o["spec"]
    (patch,) = spec["runtimePatches"]
    assert patch["manager"] == "kdflow.io/launch-training-job"
    (rj,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rj["name"] == "node"
    return rj["template"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", VERSIONS)
def test_trainjob_matches_the_schema_of_its_trainer_release(version):
    job = render(settings(kind="TrainJob", trainer_version=version), IMAGE, "kdflow-teacher-x", "team-a",
                 owner={"apiVersion": "v1", "kind": "Pod", "name": "launcher", "uid": "u-1"})
    jsonschema.validate(job, trainer_schema(version))  # strict: an unknown field fails
    assert trainer_rules.problems(job) == []  # and the webhook's offline-checkable rules pass
    for field in set(FIELD.values()):
        if field != FIELD[version]:  # the field this release does not know is absent, and its schema refuses it
            assert field not in job["spec"]
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate({**job, "spec": {**job["spec"], field: []}}, trainer_schema(version))
    assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert job["metadata"]["namespace"] == "team-a"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"  # deleted with the launcher pod
    spec = job["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed", "apiGroup": "trainer.kubeflow.org",
                                  "kind": "ClusterTrainingRuntime"}
    trainer = spec["trainer"]
    assert trainer["image"] == IMAGE and trainer["numNodes"] == 3 and trainer["numProcPerNode"] == 2
    assert trainer["resourcesPerNode"] == {"requests": {"cpu": "8", "memory": "2Gi", "nvidia.com/gpu": "2"},
                                           "limits": {"memory": "32Gi", "nvidia.com/gpu": "2"}}
    check_command(trainer["command"], "/mnt/kd/jobs/kdflow-teacher-x")
    check_env(trainer["env"])
    pod = pod_overrides(job, version)
    assert pod["containers"] == [{"name": "node", "volumeMounts": [{"name": "kdflow-data", "mountPath": "/mnt/kd"}]}]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "kdflow-data"}
    assert pod["nodeSelector"] == {"gpu": "a100"} and pod["serviceAccountName"] == "trainer"
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if FIELD[version] == "runtimePatches":  # only patches carry the pod securityContext: fsGroup makes the PVC writable
        assert pod["securityContext"] == {"runAsUser": 10001, "fsGroup": 10001, "runAsNonRoot": True}
        assert spec["activeDeadlineSeconds"] == 86400
    else:
        assert "securityContext" not in pod


def test_webhook_rules_refuse_what_the_trainer_refuses():
    job = render(settings(kind="TrainJob", trainer_version="v2.3"), IMAGE, "kdflow-teacher-x", "ns")
    (patch,) = job["spec"]["runtimePatches"]
    for bad in ("kdflow.launch-training-job", "kdflow/", "Kdflow.io/x", "/x"):
        patch["manager"] = bad
        assert any("manager" in p for p in trainer_rules.problems(job)), bad
    patch["manager"] = training_job.PATCH_MANAGER
    (rj,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    rj["template"]["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "X", "value": "1"}]
    assert trainer_rules.problems(job) == ["container 'node': envs of reserved containers go through spec.trainer"]
    rj["name"] = "worker"
    assert "targetJob 'worker' does not exist" in trainer_rules.problems(job)[0]
    job["metadata"]["name"] = "Teacher_1"
    assert "DNS-1035" in trainer_rules.problems(job)[0]


def test_job_name_and_workdir_are_stable_per_run_and_candidate(tmp_path):
    """A retried launcher (same KFP run, same candidate) gets the same job and checkpoint directory; another
    run or candidate never shares one. Staging twice keeps what the first attempt's job wrote."""
    a = training_job.job_name("run-1", {"seed": 1})
    assert a == training_job.job_name("run-1", {"seed": 1}) and trainer_rules.problems(
        render(settings(), IMAGE, a, "ns")) == []
    assert len({a, training_job.job_name("run-2", {"seed": 1}), training_job.job_name("run-1", {"seed": 2})}) == 3
    kf = Kubeflow.model_validate({"data_cache": {"pvc": "p", "mount_path": str(tmp_path / "pvc")},
                                  "training_job": {"enabled": True}})
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text("{}")
    wd = stage_files(kf, tiny_dict(), {}, str(data), a)
    (wd / "checkpoints").mkdir()
    (wd / "checkpoints" / "last.ckpt").write_text("epoch 3")
    assert stage_files(kf, tiny_dict(), {}, str(data), a) == wd  # the retry
    assert (wd / "checkpoints" / "last.ckpt").read_text() == "epoch 3"
    assert f"--ckpt-dir {wd}/checkpoints" in " ".join(training_job.command(kf, a))


def test_pytorchjob_has_master_and_workers_with_nproc_per_node():
    job = render(settings(kind="PyTorchJob", backoff_limit=2), IMAGE, "kdflow-teacher-y", "team-a")
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    spec = job["spec"]
    assert spec["nprocPerNode"] == "2"
    assert spec["runPolicy"] == {"backoffLimit": 2, "activeDeadlineSeconds": 86400, "cleanPodPolicy": "Running",
                                 "ttlSecondsAfterFinished": 3600}  # no pods or job left behind
    replicas = spec["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] + replicas["Worker"]["replicas"] == 3
    for role in ("Master", "Worker"):
        assert replicas[role]["restartPolicy"] == "OnFailure"  # resumes from the PVC checkpoints
        pod = replicas[role]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch" and container["image"] == IMAGE
        check_command(container["command"], "/mnt/kd/jobs/kdflow-teacher-y")
        check_env(container["env"])
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
        assert pod["securityContext"] == {"runAsUser": 10001, "fsGroup": 10001, "runAsNonRoot": True}
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "kdflow-data"
    single = render(settings(kind="PyTorchJob", num_nodes=1), IMAGE, "j", "ns")["spec"]["pytorchReplicaSpecs"]
    assert set(single) == {"Master"} and single["Master"]["restartPolicy"] == "OnFailure"  # default backoff 3
    never = render(settings(kind="PyTorchJob", backoff_limit=0), IMAGE, "j", "ns")["spec"]["pytorchReplicaSpecs"]
    assert never["Master"]["restartPolicy"] == "Never"


def test_job_command_is_a_valid_cli_call():
    """What torchrun runs must parse with kdflow's own CLI (the same flags dvc.yaml uses)."""
    from kdflow.cli import _parser

    command = render(settings(), IMAGE, "j", "ns")["spec"]["trainer"]["command"]
    args = _parser().parse_args(command[3:])
    assert args.command == "train-teacher" and str(args.out_model).endswith("/j/model")


def test_job_needs_a_shared_volume():
    with pytest.raises(ValueError, match="data_cache.pvc"):
        Kubeflow.model_validate({"training_job": {"enabled": True}})


@pytest.mark.parametrize("kind,ok,bad", [("TrainJob", "Complete", "Failed"), ("PyTorchJob", "Succeeded", "Failed")])
def test_job_state_from_conditions(kind, ok, bad):
    assert job_state(kind, {}) == ("running", "Pending")
    running = {"status": {"conditions": [{"type": "Created", "status": "True"}]}}
    assert job_state(kind, running)[0] == "running"
    done = {"status": {"conditions": [{"type": ok, "status": "True", "reason": "JobComplete"}]}}
    assert job_state(kind, done) == ("succeeded", "JobComplete")
    failed = {"status": {"conditions": [
        {"type": "Running", "status": "False"},
        {"type": bad, "status": "True", "reason": "BackoffLimitExceeded", "message": "pod node-0 exit 1"}]}}
    assert job_state(kind, failed) == ("failed", "BackoffLimitExceeded: pod node-0 exit 1")
    stale = {"status": {"conditions": [{"type": bad, "status": "False"}]}}
    assert job_state(kind, stale)[0] == "running"


def test_pod_problems_name_the_cause():
    pods = [
        {"metadata": {"name": "node-0"}, "status": {"containerStatuses": [
            {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}},
        {"metadata": {"name": "node-1"}, "status": {"containerStatuses": [
            {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}},
        {"metadata": {"name": "node-2"}, "status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "message": "0/3 nodes: Insufficient nvidia.com/gpu"}]}},
        {"metadata": {"name": "node-3"}, "status": {"containerStatuses": [
            {"state": {"waiting": {"reason": "ContainerCreating"}}}]}},
    ]
    assert pod_problems(pods) == ["node-0: OOMKilled (exit code 137)", "node-1: ImagePullBackOff: not found",
                                  "node-2: unschedulable: 0/3 nodes: Insufficient nvidia.com/gpu"]


@pytest.mark.parametrize("kind", ["TrainJob", "PyTorchJob"])
def test_committed_manifests_match_the_renderer(kind):
    """manifests/training is what `kdflow pipeline render-job --image kdflow` prints for the default
    settings; kustomize then sets the image from manifests/image."""
    kf = Kubeflow.model_validate({"data_cache": {"pvc": "kdflow-data"},
                                  "training_job": {"enabled": True, "kind": kind}})
    committed = yaml.safe_load((REPO / "manifests" / "training" / f"{kind.lower()}.yaml").read_text())
    assert committed == render(kf, "kdflow", "kdflow-teacher", "kubeflow")


kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@kubectl
def test_kfp_manifests_are_valid_kubernetes(tmp_path):
    out = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests" / "kfp")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout)}
    assert set(docs) == {"PersistentVolumeClaim", "Role", "RoleBinding"}
    pvc = docs["PersistentVolumeClaim"]["spec"]
    assert pvc["accessModes"] == ["ReadWriteMany"] and pvc["storageClassName"]  # RWX needs a class that has it
    rules = {r["resources"][0]: set(r["verbs"]) for r in docs["Role"]["rules"]}
    assert rules["trainjobs"] == rules["pytorchjobs"] == {"create", "get", "list", "watch", "delete"}
    assert "secrets" not in rules  # the launcher never reads credentials
    (tmp_path / "kfp.yaml").write_text(out.stdout)
    check = subprocess.run(shlex.split(f"kubernetes-validate --strict --quiet {tmp_path / 'kfp.yaml'}"),
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr


@kubectl
def test_training_kustomization_renders():
    out = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests" / "training")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (job,) = list(yaml.safe_load_all(out.stdout))
    assert job["kind"] == "TrainJob"
    from kdflow.kfp import image

    assert job["spec"]["trainer"]["image"] == image.reference(REPO)  # the one image reference
    jsonschema.validate(job, trainer_schema(Kubeflow().training_job.trainer_version))
