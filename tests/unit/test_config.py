import pytest

from kdflow.config import load_params, validate
from kdflow.errors import KdflowError
from tests.helpers import REPO, tiny_dict


def test_default_and_tiny_profiles_validate():
    assert load_params(REPO / "params.yaml").student.model.name == "cnn1d"
    for extra in REPO.glob("params-*.yaml"):
        load_params(extra)
    validate(tiny_dict())


def test_unknown_key_names_the_path():
    raw = tiny_dict()
    raw["distill"]["temprature"] = 3
    with pytest.raises(KdflowError, match=r"unknown key 'distill.temprature' \(value 3\)"):
        validate(raw)


def test_wrong_type_names_key_value_and_allowed():
    raw = tiny_dict()
    raw["distill"]["alpha"] = 1.5
    with pytest.raises(KdflowError, match=r"bad value for 'distill.alpha': 1.5 \(Input should be less than or equal"):
        validate(raw)
    raw = tiny_dict()
    raw["teacher"]["train"]["precision"] = "fp8"
    with pytest.raises(KdflowError, match=r"'teacher.train.precision': 'fp8'.*'32-true', 'bf16-mixed'"):
        validate(raw)


def test_overrides_are_typed(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text((REPO / "tests" / "params-tiny.yaml").read_text())
    cfg = load_params(p, ["distill.temperature=8", "teacher.train.augment.enabled=true"])
    assert cfg.distill.temperature == 8.0 and cfg.teacher.train.augment.enabled is True
    with pytest.raises(KdflowError, match="must look like key.path=value"):
        load_params(p, ["distill.temperature"])


def test_online_augmentation_needs_online_mode():
    with pytest.raises(KdflowError, match="needs soft_targets.mode: online"):
        validate(tiny_dict(distill__train__augment__enabled=True))
    validate(tiny_dict(distill__train__augment__enabled=True, soft_targets__mode="online"))


def test_missing_params_file(tmp_path):
    with pytest.raises(KdflowError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_digest_changes_with_params():
    assert validate(tiny_dict()).digest() != validate(tiny_dict(distill__alpha=0.5)).digest()
