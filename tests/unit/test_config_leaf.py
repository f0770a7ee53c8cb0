"""kdflow.config is a leaf (issue 23): importing it imports no torch, loss, model or kfp module, so the
code deps dvc.yaml computes for `prepare` hold no loss or model file."""

from kdflow.stages import dvc_yaml
from tests.helpers import fresh_python


def test_importing_config_imports_no_torch_and_no_registry():
    code = ("import sys, kdflow.config\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith(("
            "'kdflow.losses', 'kdflow.models', 'kdflow.kfp', 'kdflow.data', 'kdflow.lit', 'kdflow.stages')))\n"
            "assert not bad, bad")
    fresh_python(code)


def test_prepare_code_deps_hold_no_loss_model_or_kfp_file():
    deps = dvc_yaml.main_pipeline()["stages"]["prepare"]["deps"]
    bad = [d for d in deps if d.startswith(("src/kdflow/losses", "src/kdflow/models", "src/kdflow/kfp",
                                            "src/kdflow/lit"))]
    assert not bad, bad
    assert "src/kdflow/names" in deps and "src/kdflow/config.py" in deps


def test_a_loss_file_is_a_dep_of_distill_only_among_the_early_stages():
    stages = dvc_yaml.main_pipeline()["stages"]
    for name in ("prepare", "train_teacher", "soft_targets", "train_baseline"):
        assert not any(d.startswith("src/kdflow/losses") for d in stages[name]["deps"]), name
    assert "src/kdflow/losses" in stages["distill"]["deps"]
