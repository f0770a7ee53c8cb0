"""Backend conformance: every compiled variant of the pipeline, for every supported `kubeflow.kfp_backend`,
parses strictly (unknown fields refused, as the API server parses) with the protobuf schemas of that
KFP release and of every later one (tests/data/kfp: the releases' own descriptors, tags in
SOURCES.json). The table in kdflow.kfp.backend is also shown to be needed: each field it gates is
refused by the releases before its version."""

import pytest

from kdflow.errors import KdflowError
from kdflow.kfp import backend
from kdflow.kfp.entrypoints import compile_pipeline
from tests.helpers import tiny_dict
from tests.support.kfp_backend import TAGS, problems, refuses

IMAGE = "registry.example/kdflow:test@sha256:" + "b" * 64
GPU = {"stages": {"train_teacher": {
    "resources": {"accelerator_type": "nvidia.com/gpu", "accelerator_count": 1},
    "node_selector": {"pool": "gpu"}, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}}}
WORKSPACE = {"workspace": {"size": "20Gi", "storage_class": "standard-rwo"}}
VARIANTS = {
    "default": {},
    "gpu-placement": GPU,
    "job-pvc-pull-secret": {"data_cache": {"pvc": "kdflow-data"}, "image_pull_secrets": ["regcred"],
                            "training_job": {"enabled": True, "num_nodes": 2}},
    "importers": {"teacher_uri": "s3://b/teacher", "data_uri": "s3://b/data"},
}


def release(tag: str) -> str:
    return ".".join(tag.split(".")[:2])


def compile_for(tmp_path, target: str, kubeflow: dict, name: str):
    raw = tiny_dict()
    raw["kubeflow"] = {**kubeflow, "kfp_backend": target}
    return compile_pipeline(raw, tmp_path / f"{name}-{target}.yaml", image=IMAGE)


def test_every_supported_release_is_vendored():
    assert tuple(release(t) for t in TAGS) == backend.VERSIONS
    assert backend.DEFAULT in backend.VERSIONS


@pytest.mark.parametrize("target", backend.VERSIONS)
def test_every_variant_parses_strictly_on_its_release_and_later(tmp_path, target):
    with_ws = backend.supports(target, backend.WORKSPACE_IMPORT)
    for name, kubeflow in VARIANTS.items():
        if with_ws and name in ("job-pvc-pull-secret", "importers"):  # workspace + importer download
            kubeflow = {**kubeflow, **WORKSPACE}
        path = compile_for(tmp_path, target, kubeflow, name)
        for tag in TAGS:
            if backend.supports(release(tag), target):
                assert problems(path, tag) == [], (name, target, tag)


def test_the_default_needs_its_release_and_each_gated_field_is_refused_before_it(tmp_path):
    """With the defaults (run_as_user 10001, optional Secrets) the package is valid from DEFAULT on, and
    each field the table gates is refused by exactly the releases before its version (checked one field
    at a time: a parse stops at its first unknown field)."""
    import yaml

    path = compile_for(tmp_path, backend.DEFAULT, {}, "default")
    valid = [release(t) for t in TAGS if not problems(path, t)]
    assert valid == [v for v in backend.VERSIONS if backend.supports(v, backend.DEFAULT)]
    platform = list(yaml.safe_load_all(path.read_text()))[1]
    ex = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-prepare"]
    optional = [s for s in ex["secretAsEnv"] if s["optional"]][:1]
    fields = {backend.SECURITY_CONTEXT: {"securityContext": ex["securityContext"]},
              backend.OPTIONAL_SECRET: {"secretAsEnv": optional}}
    for since, doc in fields.items():
        for tag in TAGS:
            assert bool(refuses(doc, "KubernetesExecutorConfig", tag)) is (not backend.supports(release(tag), since))
    importer = compile_for(tmp_path, backend.WORKSPACE_IMPORT, {**VARIANTS["importers"], **WORKSPACE}, "imp")
    for tag in TAGS:
        refused = "downloadToWorkspace" in " ".join(problems(importer, tag))
        assert refused is (not backend.supports(release(tag), backend.WORKSPACE_IMPORT)), tag


def test_older_releases_leave_out_what_they_cannot_read(tmp_path):
    import yaml

    path = compile_for(tmp_path, "2.14", {}, "old")
    executors = list(yaml.safe_load_all(path.read_text()))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for ex in executors.values():
        assert [s["secretName"] for s in ex["secretAsEnv"]] == ["kdflow-mlflow"]  # optional ones cannot be
        assert "securityContext" not in ex and "optional" not in ex["secretAsEnv"][0]


def test_settings_a_release_cannot_carry_are_refused_with_the_release_they_need(tmp_path):
    with pytest.raises(KdflowError, match="run_as_user needs kfp_backend >= 2.16"):
        compile_for(tmp_path, "2.15", {"run_as_user": 1000}, "ru")
    with pytest.raises(KdflowError, match="workspace needs kfp_backend >= 2.15"):
        compile_for(tmp_path, "2.14", WORKSPACE, "ws")
    with pytest.raises(KdflowError, match="kubeflow.kfp_backend"):
        compile_for(tmp_path, "2.13", {}, "bad")
