"""The compiled pipeline: loads back as a KFP component and carries every component, the image, the
fan-outs (ParallelFor), the gate (If), the exit handler and the cluster settings from params."""

import json
import subprocess
import sys

import pytest
import yaml
from kfp.components import load_component_from_file

from kdflow.errors import KdflowError
from tests.helpers import REPO, tiny_dict

sys.path.insert(0, str(REPO))  # components/ and pipelines/ live at the repo's top level

from pipelines.entrypoints import compile_pipeline  # noqa: E402

IMAGE = "registry.example/kdflow:test"
KUBEFLOW = {
    "defaults": {"node_selector": {"pool": "cpu"}},
    "stages": {"train_teacher": {
        "resources": {"cpu_request": "4", "memory_limit": "16Gi", "accelerator_type": "nvidia.com/gpu",
                      "accelerator_count": 1},
        "node_selector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}},
    "data_cache": {"pvc": "kdflow-data"},
    "soft_target_shards": 3,
    "sweep": [{"temperature": 2.0, "alpha": 0.5}, {"temperature": 8.0, "alpha": 0.9}],
    "workspace_size": "50Gi",
    "env": {"KDFLOW_LOG_LEVEL": "info"},
}
COMPONENTS = ["prepare", "train-teacher", "select-best", "soft-targets", "merge-soft-targets", "train-baseline",
              "distill", "finetune", "evaluate", "gate", "register", "record-status"]


def compile_with(tmp_path, kubeflow: dict, name: str = "pipeline.yaml"):
    raw = tiny_dict()
    raw["kubeflow"] = kubeflow
    path = compile_pipeline(raw, tmp_path / name, image=IMAGE)
    spec, platform = yaml.safe_load_all(path.read_text())
    return path, spec, platform["platforms"]["kubernetes"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return compile_with(tmp_path_factory.mktemp("kfp"), KUBEFLOW)


def dag_tasks(spec) -> dict[str, dict]:
    """Every task of every DAG (root, exit handler, sub-pipelines, loops, conditions)."""
    dags = [spec["root"]] + [c for c in spec["components"].values() if "dag" in c]
    return {f"{i}/{name}": t for i, c in enumerate(dags) for name, t in c["dag"]["tasks"].items()}


def executor(spec, component: str) -> dict:
    return spec["deploymentSpec"]["executors"][f"exec-{component}"]["container"]


def test_yaml_loads_back_as_a_component(compiled):
    path, spec, _ = compiled
    assert load_component_from_file(str(path)).name == "kdflow-distillation"
    executors = spec["deploymentSpec"]["executors"]
    for name in COMPONENTS:
        assert f"exec-{name}" in executors, name
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}


def test_params_default_is_params_yaml_without_the_cluster_section(compiled):
    _, spec, _ = compiled
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    default = inputs["params"]["defaultValue"]
    assert "kubeflow" not in default
    assert default["teacher"]["model"]["name"] == "cnn1d"
    assert inputs["sweep"]["defaultValue"] == KUBEFLOW["sweep"]
    assert inputs["teachers"]["defaultValue"] == [{}]  # one plain teacher


def test_fan_outs_gate_and_exit_handler(compiled):
    _, spec, _ = compiled
    tasks = dag_tasks(spec)
    iterators = [t["parameterIterator"]["items"] for t in tasks.values() if "parameterIterator" in t]
    assert {"raw": "[0, 1, 2]"} in iterators  # soft-target shards
    assert {"inputParameter": "pipelinechannel--sweep"} in iterators
    assert {"inputParameter": "pipelinechannel--teachers"} in iterators
    conditions = [t["triggerPolicy"]["condition"] for t in tasks.values() if "condition" in t.get("triggerPolicy", {})]
    assert conditions == ["inputs.parameter_values['pipelinechannel--gate-Output'] == true"]
    (exit_task,) = [t for t in tasks.values() if t["componentRef"]["name"] == "comp-record-status"]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert "taskFinalStatus" in exit_task["inputs"]["parameters"]["status"]


def test_shard_count_and_selection_on_collected_outputs(compiled):
    _, spec, _ = compiled
    tasks = dag_tasks(spec)
    (shard,) = [t for t in tasks.values() if t["componentRef"]["name"] == "comp-soft-targets"]
    assert shard["inputs"]["parameters"]["num_shards"]["runtimeValue"]["constant"] == 3
    merge = spec["components"]["comp-merge-soft-targets"]["inputDefinitions"]["artifacts"]["shards"]
    assert merge["isArtifactList"] is True
    for comp in ("comp-select-best", "comp-select-best-2"):
        assert spec["components"][comp]["inputDefinitions"]["artifacts"]["candidates"]["isArtifactList"] is True


def test_every_step_reading_the_dataset_is_keyed_on_its_hash(compiled):
    _, spec, _ = compiled
    for name, comp in spec["components"].items():
        if "dag" in comp or "data" not in comp.get("inputDefinitions", {}).get("artifacts", {}):
            continue
        assert "data_hash" in comp["inputDefinitions"]["parameters"], name


def test_side_effect_steps_are_never_cached(compiled):
    _, spec, _ = compiled
    by_component = {t["componentRef"]["name"]: t for t in dag_tasks(spec).values()}
    for comp in ("comp-prepare", "comp-register", "comp-record-status"):
        assert not by_component[comp]["cachingOptions"].get("enableCache"), comp
    assert by_component["comp-train-teacher"]["cachingOptions"]["enableCache"] is True


def test_resources_and_placement_from_params(compiled):
    _, spec, k8s = compiled
    teacher = executor(spec, "train-teacher")["resources"]
    assert teacher["resourceCpuRequest"] == "4" and teacher["resourceMemoryLimit"] == "16Gi"
    assert teacher["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert teacher["accelerator"]["resourceCount"] == "1"
    baseline = executor(spec, "train-baseline")["resources"]  # the defaults
    assert baseline["resourceCpuRequest"] == "1" and baseline["resourceMemoryRequest"] == "2Gi"
    assert "accelerator" not in baseline
    execs = k8s["deploymentSpec"]["executors"]
    assert execs["exec-train-teacher"]["nodeSelector"]["labels"] == {"pool": "gpu"}
    assert execs["exec-train-teacher"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert execs["exec-train-baseline"]["nodeSelector"]["labels"] == {"pool": "cpu"}
    assert "tolerations" not in execs["exec-train-baseline"]
    assert execs["exec-prepare"]["pvcMount"][0]["mountPath"] == "/mnt/kdflow"
    assert "pvcMount" not in execs["exec-distill"]
    assert k8s["pipelineConfig"]["workspace"]["size"] == "50Gi"


def test_credentials_come_from_secrets_only(compiled):
    path, spec, k8s = compiled
    for name, ex in k8s["deploymentSpec"]["executors"].items():
        envs = {m["envVar"]: s["secretName"] for s in ex["secretAsEnv"] for m in s["keyToEnv"]}
        assert envs["MLFLOW_TRACKING_URI"] == "kdflow-mlflow", name
        assert envs["AWS_SECRET_ACCESS_KEY"] == "kdflow-object-store", name
        assert ex["securityContext"]["runAsNonRoot"] is True
    literal_env = {e["name"] for ex in spec["deploymentSpec"]["executors"].values()
                   for e in ex["container"].get("env", [])}
    assert literal_env <= {"KDFLOW_LOG_LEVEL", "KDFLOW_DATA_CACHE"}


def test_literal_credentials_are_refused(tmp_path):
    with pytest.raises(KdflowError, match="kubeflow.env.*credentials"):
        compile_with(tmp_path, {"env": {"MLFLOW_TRACKING_URI": "http://user:pw@mlflow"}})
    with pytest.raises(KdflowError, match="kubeflow.stages.train_teacher.resources.cpu_request"):
        compile_with(tmp_path, {"stages": {"train_teacher": {"resources": {"cpu_request": "lots"}}}})
    with pytest.raises(KdflowError, match="unknown key 'kubeflow.shards'"):
        compile_with(tmp_path, {"shards": 4})


def test_training_job_variant_launches_the_teacher(tmp_path):
    kf = {"data_cache": {"pvc": "kdflow-data"}, "training_job": {"enabled": True, "num_nodes": 4},
          "workspace_size": None}
    _, spec, k8s = compile_with(tmp_path, kf)
    assert "exec-launch-training-job" in spec["deploymentSpec"]["executors"]
    assert "exec-train-teacher" not in spec["deploymentSpec"]["executors"]
    (task,) = [t for t in dag_tasks(spec).values() if t["componentRef"]["name"] == "comp-launch-training-job"]
    settings = json.loads(task["inputs"]["parameters"]["settings"]["runtimeValue"]["constant"])
    assert settings["training_job"]["num_nodes"] == 4 and settings["workspace_size"] is None
    assert task["inputs"]["parameters"]["image"]["runtimeValue"]["constant"] == IMAGE
    assert "pipelineConfig" not in k8s  # workspace off


def test_cli_compile_and_image(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kdflow.cli", "pipeline", "compile", "--params",
                          str(REPO / "tests" / "params-tiny.yaml"), "-S", "kubeflow.soft_target_shards=2",
                          "--image", IMAGE, "-o", str(tmp_path / "p.yaml")], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert load_component_from_file(str(tmp_path / "p.yaml")).name == "kdflow-distillation"
    img = subprocess.run([sys.executable, "-m", "kdflow.cli", "pipeline", "image"], capture_output=True, text=True,
                         timeout=120)
    assert img.stdout.strip().startswith("ghcr.io/kdflow/kdflow:")
    bad = subprocess.run([sys.executable, "-m", "kdflow.cli", "pipeline", "compile", "--params",
                          str(REPO / "tests" / "params-tiny.yaml"), "-S", "kubeflow.sweep=oops"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "kubeflow.sweep" in bad.stderr


def test_submit_reports_an_unreachable_server(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "kdflow.cli", "pipeline", "submit", "--params",
                          str(REPO / "tests" / "params-tiny.yaml"), "--host", f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stderr
    assert f"KFP server http://127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr
