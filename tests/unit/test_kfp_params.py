"""Params on their way through a pipeline: the `kubeflow` section split off and validated, KFP's
number handling undone, per-step overrides, and per-stage placement merged over the defaults."""

import pytest

from kdflow.cluster import Kubeflow, restore_ints, split, stage_params
from kdflow.cluster.params import drop_none
from kdflow.config import validate
from kdflow.errors import KdflowError
from tests.helpers import tiny_dict


def as_kfp_struct(value):
    """What a KFP Struct parameter hands a component: every number a double."""
    if isinstance(value, bool) or not isinstance(value, int | float | dict | list):
        return value
    if isinstance(value, dict):
        return {k: as_kfp_struct(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_kfp_struct(v) for v in value]
    return float(value)


def test_struct_round_trip_gives_the_same_config():
    raw = tiny_dict()
    cfg = stage_params(as_kfp_struct(raw))
    assert cfg == validate(raw)
    assert cfg.digest() == validate(raw).digest()  # same lineage hash as `dvc repro` of these params
    assert cfg.teacher.model.kwargs["channels"] == [32, 32, 32]
    assert all(type(c) is int for c in cfg.teacher.model.kwargs["channels"])


def test_restore_ints_keeps_real_floats():
    assert restore_ints({"a": [1.0, 0.5, True], "b": {"c": 2.0}}) == {"a": [1, 0.5, True], "b": {"c": 2}}


def test_overrides_are_dotted_and_optionally_relative_to_a_section():
    raw = tiny_dict()
    trial = stage_params(raw, {"temperature": 8.0, "alpha": 0.5, "train.lr": 0.1}, section="distill")
    assert (trial.distill.temperature, trial.distill.alpha, trial.distill.train.lr) == (8.0, 0.5, 0.1)
    teacher = stage_params(raw, {"seed": 3, "teacher.model.kwargs.channels": [8, 8, 8]})
    assert teacher.seed == 3 and teacher.teacher.model.kwargs["channels"] == [8, 8, 8]
    with pytest.raises(KdflowError, match="distill.temprature"):
        stage_params(raw, {"temprature": 2}, section="distill")


def test_split_separates_and_validates_the_cluster_section():
    raw = tiny_dict()
    raw["kubeflow"] = {"soft_target_shards": 4}
    params, kf = split(raw)
    assert "kubeflow" not in params and kf.soft_target_shards == 4
    raw["kubeflow"] = {"soft_target_shards": 0}
    with pytest.raises(KdflowError, match="kubeflow.soft_target_shards"):
        split(raw)
    bad = tiny_dict()
    bad["teacher"]["train"]["epochs"] = -1
    with pytest.raises(KdflowError, match="teacher.train.epochs"):
        split(bad)


def test_nulls_are_dropped_only_when_they_mean_the_default():
    raw = tiny_dict()
    raw["soft_targets"]["topk"] = None  # default None: dropping it changes nothing
    params, _ = split(raw)
    assert "topk" not in params["soft_targets"]
    assert drop_none({"a": None, "b": [{"c": None, "d": 1}]}) == {"b": [{"d": 1}]}


def test_placement_merges_stage_settings_over_defaults():
    kf = Kubeflow.model_validate({
        "defaults": {"resources": {"cpu_request": "2"}, "node_selector": {"pool": "cpu", "zone": "a"},
                     "tolerations": [{"key": "spot", "operator": "Exists"}]},
        "stages": {"distill": {"resources": {"memory_limit": "32Gi"}, "node_selector": {"pool": "big"}},
                   "evaluate": {"tolerations": []}},
    })
    d = kf.placement("distill")
    assert (d.resources.cpu_request, d.resources.memory_request, d.resources.memory_limit) == ("2", "2Gi", "32Gi")
    assert d.node_selector == {"pool": "big", "zone": "a"}
    assert [t.key for t in d.tolerations] == ["spot"]
    assert kf.placement("evaluate").tolerations == []  # an explicit empty list clears the defaults
    assert kf.placement("prepare").resources.cpu_request == "2"


@pytest.mark.parametrize("env", ["MLFLOW_TRACKING_URI", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "HF_TOKEN",
                                 "API_KEY"])
def test_credentials_cannot_be_literal_env(env):
    with pytest.raises(ValueError, match="Kubernetes Secrets"):
        Kubeflow.model_validate({"env": {env: "x"}})


def test_resource_quantities_are_checked():
    with pytest.raises(ValueError, match="millicores"):
        Kubeflow.model_validate({"defaults": {"resources": {"cpu_request": "2 cores"}}})
    with pytest.raises(ValueError, match="accelerator_type"):
        Kubeflow.model_validate({"stages": {"distill": {"resources": {"accelerator_count": 1}}}})
    with pytest.raises(ValueError, match="stages"):
        Kubeflow.model_validate({"stages": {"trian_teacher": {}}})
