"""The compiled pipeline, read the way the KFP backend reads it: the IR and the Kubernetes platform
spec parse strictly into KFP's own protobufs; every component, the one image, the typed run
parameters, the fan-outs (ParallelFor with a parallelism limit), the gate (If), the exit handler,
the workspace (off by default; a PVC spec the backend accepts when on), caching keys that stay the
same across compiles, importers, and the cluster settings from params."""

import copy
import json
import shlex
import subprocess
import sys

import pytest
import yaml
from google.protobuf import json_format
from kfp.components import load_component_from_file
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb
from kfp.pipeline_spec import pipeline_spec_pb2

from kdflow.errors import KdflowError
from kdflow.kfp.entrypoints import compile_pipeline
from kdflow.kfp.params import TYPED
from tests.helpers import REPO, tiny_dict

IMAGE = "registry.example/kdflow:test@sha256:" + "a" * 64
KUBEFLOW = {
    "defaults": {"node_selector": {"pool": "cpu"}},
    "stages": {"train_teacher": {
        "resources": {"cpu_request": "4", "memory_limit": "16Gi", "accelerator_type": "nvidia.com/gpu",
                      "accelerator_count": 1},
        "node_selector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}},
    "data_cache": {"pvc": "kdflow-data"},
    "soft_target_shards": 3,
    "max_parallel": 2,
    "sweep": [{"temperature": 2.0, "alpha": 0.5}, {"temperature": 8.0, "alpha": 0.9}],
    "workspace": {"size": "50Gi", "storage_class": "standard-rwo"},
    "env": {"KDFLOW_LOG_LEVEL": "info"},
}
COMPONENTS = ["resolve-params", "data-version", "prepare", "train-teacher", "select-best", "soft-targets",
              "merge-soft-targets", "train-baseline", "distill", "finetune", "evaluate", "gate", "register",
              "record-status"]
UNCACHED = {"comp-data-version", "comp-register", "comp-record-status"}


def compile_with(tmp_path, kubeflow: dict, name: str = "pipeline.yaml", **params):
    raw = tiny_dict(**params)
    raw["kubeflow"] = kubeflow
    path = compile_pipeline(raw, tmp_path / name, image=IMAGE)
    docs = list(yaml.safe_load_all(path.read_text()))
    platform = docs[1]["platforms"]["kubernetes"] if len(docs) > 1 else {}
    return path, docs[0], platform


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return compile_with(tmp_path_factory.mktemp("kfp"), KUBEFLOW)


def dag_tasks(spec) -> dict[str, dict]:
    """Every task of every DAG (root, exit handler, sub-pipelines, loops, conditions), by component path."""
    dags = [("root", spec["root"])] + [(n, c) for n, c in spec["components"].items() if "dag" in c]
    return {f"{owner}/{name}": t for owner, c in dags for name, t in c["dag"]["tasks"].items()}


def by_component(spec, component: str) -> list[dict]:
    return [t for t in dag_tasks(spec).values() if t.get("componentRef", {}).get("name") == component]


def executor(spec, component: str) -> dict:
    return spec["deploymentSpec"]["executors"][f"exec-{component}"]["container"]


def test_ir_and_platform_spec_parse_strictly_into_kfp_protobufs(compiled):
    """What the backend does first: an unknown or misspelt field fails here as it would at upload."""
    path, spec, k8s = compiled
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    platform = list(yaml.safe_load_all(path.read_text()))[1]
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    for name, ex in k8s["deploymentSpec"]["executors"].items():
        json_format.ParseDict(ex, k8s_pb.KubernetesExecutorConfig()), name
    assert spec["schemaVersion"] == "2.1.0" and spec["sdkVersion"].startswith("kfp-2.")


def test_yaml_loads_back_with_every_component_on_one_image(compiled):
    path, spec, _ = compiled
    assert load_component_from_file(str(path)).name == "kdflow-distillation"
    executors = spec["deploymentSpec"]["executors"]
    for name in COMPONENTS:
        assert f"exec-{name}" in executors, name
    assert {e["container"]["image"] for e in executors.values() if "container" in e} == {IMAGE}


def test_typed_run_parameters_and_the_params_file(compiled):
    _, spec, _ = compiled
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    types = {k: v["parameterType"] for k, v in inputs.items()}
    assert types == {"params_yaml": "STRING", "data_rev": "STRING", "teacher_epochs": "NUMBER_INTEGER",
                     "distill_epochs": "NUMBER_INTEGER", "temperature": "NUMBER_DOUBLE", "alpha": "NUMBER_DOUBLE",
                     "teacher_uri": "STRING", "data_uri": "STRING", "teachers": "LIST", "sweep": "LIST"}
    assert set(TYPED) < set(types)
    params = yaml.safe_load(inputs["params_yaml"]["defaultValue"])
    assert "kubeflow" not in params and params["teacher"]["model"]["kwargs"]["channels"] == [32, 32, 32]
    assert inputs["temperature"]["defaultValue"] == params["distill"]["temperature"]
    assert inputs["sweep"]["defaultValue"] == KUBEFLOW["sweep"] and inputs["teachers"]["defaultValue"] == [{}]
    # every step reads the params file written by resolve_params, not a struct parameter
    for name, comp in spec["components"].items():
        if "executorLabel" in comp and name not in ("comp-resolve-params", "comp-record-status"):
            assert "params" in comp["inputDefinitions"]["artifacts"], name
            assert "params" not in comp["inputDefinitions"].get("parameters", {}), name


def test_fan_outs_are_limited_and_gate_and_exit_handler_wired(compiled):
    _, spec, _ = compiled
    tasks = dag_tasks(spec)
    loops = [t for t in tasks.values() if "parameterIterator" in t]
    assert {json.dumps(t["parameterIterator"]["items"], sort_keys=True) for t in loops} == {
        '{"raw": "[0, 1, 2]"}', '{"inputParameter": "pipelinechannel--sweep"}',
        '{"inputParameter": "pipelinechannel--teachers"}'}
    assert [t["iteratorPolicy"]["parallelismLimit"] for t in loops] == [2, 2, 2]
    conditions = [t["triggerPolicy"]["condition"] for t in tasks.values() if "condition" in t.get("triggerPolicy", {})]
    assert conditions == ["inputs.parameter_values['pipelinechannel--gate-Output'] == true"]
    (exit_task,) = by_component(spec, "comp-record-status")
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert "taskFinalStatus" in exit_task["inputs"]["parameters"]["status"]
    (shard,) = by_component(spec, "comp-soft-targets")
    (shards,) = by_component(spec, "comp-soft-target-shards")
    assert shards["inputs"]["parameters"]["num_shards"]["runtimeValue"]["constant"] == 3
    assert shard["inputs"]["parameters"]["num_shards"] == {"componentInputParameter": "pipelinechannel--num_shards"}
    assert spec["components"]["comp-merge-soft-targets"]["inputDefinitions"]["artifacts"]["shards"]["isArtifactList"]


def cache_relevant(spec) -> dict:
    """What the backend's cache key is made of, per task: its inputs (parameter values and where
    artifacts come from), component, caching option, and the executor's image and command."""
    out = {}
    for key, t in dag_tasks(spec).items():
        comp = t.get("componentRef", {}).get("name", "")
        ex = spec["deploymentSpec"]["executors"].get(f"exec-{comp.removeprefix('comp-')}", {})
        out[key] = {"inputs": t.get("inputs"), "cache": t.get("cachingOptions"), "component": comp,
                    "executor": ex.get("container") or ex.get("importer")}
    return out


def test_cache_keys_are_stable_and_only_side_effects_are_uncached(compiled, tmp_path):
    _, spec, _ = compiled
    _, again, _ = compile_with(tmp_path, copy.deepcopy(KUBEFLOW))
    assert cache_relevant(again) == cache_relevant(spec)  # nothing run-specific is baked in
    for key, t in dag_tasks(spec).items():
        comp = t.get("componentRef", {}).get("name", "")
        if comp.startswith("comp-") and f"exec-{comp[5:]}" in spec["deploymentSpec"]["executors"]:
            assert bool(t["cachingOptions"].get("enableCache")) is (comp not in UNCACHED), key
    # prepare is keyed on the data version, computed fresh each run by the uncached data_version
    (prep,) = by_component(spec, "comp-prepare")
    assert prep["inputs"]["parameters"]["data_key"]["taskOutputParameter"] == {
        "outputParameterKey": "Output", "producerTask": "data-version"}
    # a changed param is a changed input value of resolve_params, whose new params artifact then
    # changes every downstream key; the task wiring itself stays the same
    _, other, _ = compile_with(tmp_path, copy.deepcopy(KUBEFLOW), "other.yaml", distill__temperature=2.0)
    assert cache_relevant(other) == cache_relevant(spec)
    defaults = [{k: v.get("defaultValue") for k, v in s["root"]["inputDefinitions"]["parameters"].items()}
                for s in (spec, other)]
    assert {k for k in defaults[0] if defaults[0][k] != defaults[1][k]} == {"temperature", "params_yaml"}
    (resolve,) = by_component(spec, "comp-resolve-params")
    assert resolve["inputs"]["parameters"]["temperature"] == {"componentInputParameter": "pipelinechannel--temperature"}


def test_workspace_is_a_pvc_spec_the_backend_accepts_and_prepare_uses_it(compiled, tmp_path):
    _, spec, k8s = compiled
    ws = k8s["pipelineConfig"]["workspace"]
    assert ws["size"] == "50Gi"
    patch = ws["kubernetes"]["pvcSpecPatch"]
    assert patch == {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard-rwo"}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ws"},
           "spec": {**patch, "resources": {"requests": {"storage": ws["size"]}}}}
    (tmp_path / "pvc.yaml").write_text(yaml.safe_dump(pvc))
    check = subprocess.run(shlex.split(f"kubernetes-validate --strict --quiet {tmp_path / 'pvc.yaml'}"),
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    (prep,) = by_component(spec, "comp-prepare")
    assert prep["inputs"]["parameters"]["scratch"]["runtimeValue"]["constant"] == "{{$.workspace_path}}"


def test_workspace_is_off_by_default(tmp_path):
    _, spec, k8s = compile_with(tmp_path, {})
    assert "pipelineConfig" not in k8s
    (prep,) = by_component(spec, "comp-prepare")
    assert prep["inputs"]["parameters"]["scratch"]["runtimeValue"]["constant"] == ""


def test_importers_replace_prepare_and_the_teacher(tmp_path):
    kf = {"teacher_uri": "s3://models/teacher", "data_uri": "s3://data/prepared"}
    _, spec, _ = compile_with(tmp_path, kf)
    executors = spec["deploymentSpec"]["executors"]
    importers = {e["importer"]["typeSchema"]["schemaTitle"]: e["importer"] for e in executors.values()
                 if "importer" in e}
    assert set(importers) == {"system.Model", "system.Dataset"}
    assert all(i["artifactUri"] == {"runtimeParameter": "uri"} and not i.get("reimport") for i in importers.values())
    assert not {"exec-prepare", "exec-train-teacher", "exec-data-version"} & set(executors)
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["teacher_uri"]["defaultValue"] == "s3://models/teacher"
    (resolve,) = by_component(spec, "comp-resolve-params")
    assert resolve["inputs"]["parameters"]["imports"]["runtimeValue"]["constant"] == ["teacher_uri", "data_uri"]


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


def test_credentials_come_from_secrets_whose_keys_are_the_env_names(compiled):
    _, spec, k8s = compiled
    for name, ex in k8s["deploymentSpec"]["executors"].items():
        refs = {m["envVar"]: (s["secretName"], m["secretKey"], s["optional"]) for s in ex["secretAsEnv"]
                for m in s["keyToEnv"]}
        assert refs["MLFLOW_TRACKING_URI"] == ("kdflow-mlflow", "MLFLOW_TRACKING_URI", False), name
        assert refs["MLFLOW_TRACKING_PASSWORD"] == ("kdflow-mlflow-auth", "MLFLOW_TRACKING_PASSWORD", True), name
        assert refs["AWS_SECRET_ACCESS_KEY"] == ("kdflow-object-store", "AWS_SECRET_ACCESS_KEY", True), name
        assert ex["securityContext"]["runAsNonRoot"] is True
    literal_env = {e["name"] for ex in spec["deploymentSpec"]["executors"].values()
                   for e in ex.get("container", {}).get("env", [])}
    assert literal_env <= {"KDFLOW_LOG_LEVEL", "KDFLOW_DATA_CACHE"}


def test_bad_cluster_settings_are_refused(tmp_path):
    with pytest.raises(KdflowError, match="kubeflow.env.*credentials"):
        compile_with(tmp_path, {"env": {"MLFLOW_TRACKING_URI": "http://user:pw@mlflow"}})
    with pytest.raises(KdflowError, match="kubeflow.stages.train_teacher.resources.cpu_request"):
        compile_with(tmp_path, {"stages": {"train_teacher": {"resources": {"cpu_request": "lots"}}}})
    with pytest.raises(KdflowError, match="unknown key 'kubeflow.shards'"):
        compile_with(tmp_path, {"shards": 4})
    with pytest.raises(KdflowError, match="kubeflow.workspace.size"):
        compile_with(tmp_path, {"workspace": {"size": "lots"}})


def test_training_job_variant_launches_the_teacher(tmp_path):
    kf = {"data_cache": {"pvc": "kdflow-data"}, "training_job": {"enabled": True, "num_nodes": 4}}
    _, spec, _ = compile_with(tmp_path, kf)
    assert "exec-launch-training-job" in spec["deploymentSpec"]["executors"]
    assert "exec-train-teacher" not in spec["deploymentSpec"]["executors"]
    (task,) = by_component(spec, "comp-launch-training-job")
    settings = json.loads(task["inputs"]["parameters"]["settings"]["runtimeValue"]["constant"])
    assert settings["training_job"]["num_nodes"] == 4 and settings["training_job"]["trainer_version"] == "v2.3"
    assert task["inputs"]["parameters"]["image"]["runtimeValue"]["constant"] == IMAGE
    assert task["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "kdflow.cli", "pipeline", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_cli_compile_and_image(tmp_path):
    tiny = str(REPO / "tests" / "params-tiny.yaml")
    out = run_cli("compile", "--params", tiny, "-S", "kubeflow.soft_target_shards=2", "-o", str(tmp_path / "p.yaml"),
                  cwd=REPO)
    assert out.returncode == 0, out.stderr
    spec = yaml.safe_load_all((tmp_path / "p.yaml").read_text()).__next__()
    from kdflow.kfp import image

    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {image.reference(REPO)}  # no --image: manifests/image, the kustomize images: entry
    img = run_cli("image", cwd=REPO)
    assert img.stdout.strip() == image.reference(REPO)
    bad = run_cli("compile", "--params", tiny, "-S", "kubeflow.sweep=oops", cwd=tmp_path)
    assert bad.returncode == 2 and "kubeflow.sweep" in bad.stderr


def test_submit_reports_an_unreachable_server(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run_cli("submit", "--params", str(REPO / "tests" / "params-tiny.yaml"), "--host",
                  f"http://127.0.0.1:{port}", "--arg", "temperature=2", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"KFP server http://127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr
