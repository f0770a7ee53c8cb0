"""Params on their way through a pipeline: the `kubeflow` section split off and validated, the typed
run parameters applied by resolve_params, the params file every step reads, KFP's number handling
of struct overrides undone, and per-stage placement merged over the defaults."""


import pytest
import yaml

from kdflow.config import validate
from kdflow.errors import KdflowError
from kdflow.kfp.params import check_imports, read, resolve, restore_ints, split, stage_params, typed_defaults, write
from kdflow.kfp.schema import Kubeflow
from tests.helpers import fresh_python, tiny_dict


def as_kfp_struct(value):
    """What a KFP Struct parameter hands a component: every number a double."""
    if isinstance(value, bool) or not isinstance(value, int | float | dict | list):
        return value
    if isinstance(value, dict):
        return {k: as_kfp_struct(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_kfp_struct(v) for v in value]
    return float(value)


def test_params_file_round_trip_gives_the_same_config(tmp_path):
    raw = tiny_dict()
    params_yaml = yaml.safe_dump(raw, default_flow_style=True, width=float("inf"))  # as compiled: one line
    cfg = resolve(params_yaml, {})
    write(cfg, tmp_path / "params")
    again = stage_params(tmp_path / "params")
    assert again == validate(raw) and again.digest() == validate(raw).digest()  # lineage as in `dvc repro`
    assert all(type(c) is int for c in again.teacher.model.kwargs["channels"])
    assert read(tmp_path / "params" / "params.yaml") == read(tmp_path / "params")


def test_typed_parameters_override_the_params_file():
    raw = tiny_dict()
    defaults = typed_defaults(raw)
    assert defaults == {"data_rev": "", "teacher_epochs": 2, "distill_epochs": 2, "temperature": 4.0, "alpha": 0.9}
    # what KFP hands resolve_params: NUMBER_INTEGER parameters may arrive as doubles
    cfg = resolve(yaml.safe_dump(raw), {**defaults, "data_rev": "v2", "teacher_epochs": 7.0, "temperature": 2.5})
    assert (cfg.data.rev, cfg.teacher.train.epochs, cfg.distill.temperature, cfg.distill.alpha) == ("v2", 7, 2.5, 0.9)
    assert type(cfg.teacher.train.epochs) is int
    assert resolve(yaml.safe_dump(raw), {"data_rev": ""}).data.rev is None  # "" keeps the file's value
    with pytest.raises(KdflowError, match="distill.alpha"):
        resolve(yaml.safe_dump(raw), {"alpha": 7.0})
    with pytest.raises(KdflowError, match="unknown typed pipeline parameter 'epochs'"):
        resolve(yaml.safe_dump(raw), {"epochs": 3})


def test_a_uri_the_pipeline_does_not_import_is_refused():
    check_imports({"teacher_uri": "s3://b/t", "data_uri": ""}, ["teacher_uri"])
    with pytest.raises(KdflowError, match="teacher_uri set.*-S kubeflow.teacher_uri=URI"):
        check_imports({"teacher_uri": "s3://b/t", "data_uri": ""}, [])


def test_schema_imports_without_kfp_and_config_does_not_import_it():
    """The kfp package owns its params section: kdflow.config holds it as a plain mapping and never imports
    kdflow.kfp; the schema and the params module import in a fresh interpreter with kfp absent."""
    code = ("import sys, typing; sys.modules['kfp'] = None\n"  # any `import kfp` now raises ImportError
            "import kdflow.config\n"
            "assert not [m for m in sys.modules if m.startswith('kdflow.kfp')]\n"
            "import kdflow.kfp.schema, kdflow.kfp.params\n"
            "assert kdflow.config.Params.model_fields['kubeflow'].annotation == dict[str, typing.Any]")
    fresh_python(code)


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
