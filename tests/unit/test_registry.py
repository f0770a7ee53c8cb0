"""The stage registry is the one declaration: CLI, dvc.yaml and the pipeline order derive from it."""

import subprocess
import sys

import pytest

from kdflow.cli import _parser
from kdflow.stages import dvc_yaml
from kdflow.stages.registry import BY_NAME, PIPELINE, STAGES, Port, Stage, get
from tests.helpers import REPO


def kdflow(*args):
    return subprocess.run([sys.executable, "-m", "kdflow.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def test_every_stage_is_a_subcommand_with_its_declared_flags():
    sub = next(a for a in _parser()._actions if a.dest == "command").choices
    for stage in STAGES:
        flags = {o for a in sub[stage.command]._actions for o in a.option_strings}
        declared = {f"--{p.cli_flag}" for p in (*stage.inputs, *stage.outputs)}
        assert declared <= flags, stage.name
        assert stage.load()  # "module:function" resolves


def test_methods_stages_are_reachable_from_kdflow_with_their_names():
    res = kdflow("--help")
    for cmd in ("born-again", "combine-teachers", "teacher-pool-member", "sweep", "dvc-yaml"):
        assert cmd in res.stdout
    res = kdflow("born-again", "--help")
    assert res.returncode == 0 and res.stdout.startswith("usage: kdflow born-again")
    res = kdflow("born-again", "--data", "d")
    assert res.returncode == 2 and "the following arguments are required: --teacher, --out" in res.stderr


def test_committed_dvc_files_are_what_the_registry_generates():
    res = kdflow("dvc-yaml", "--check")
    assert res.returncode == 0, res.stderr


def test_check_fails_on_a_stale_file(tmp_path):
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "dvc.yaml").write_text(dvc_yaml.render(dvc_yaml.main_pipeline(), dvc_yaml.MAIN_NOTE))
    assert dvc_yaml.main(["--root", str(tmp_path), "--check"]) == 2
    assert dvc_yaml.main(["--root", str(tmp_path)]) == 0
    assert dvc_yaml.main(["--root", str(tmp_path), "--check"]) == 0


def test_code_deps_follow_imports():
    deps = dvc_yaml.main_pipeline()["stages"]
    # stages/common.py is imported by every training stage; it was missing from the hand-written dvc.yaml
    for name in ("train_teacher", "train_baseline", "distill", "finetune"):
        assert "src/kdflow/stages/common.py" in deps[name]["deps"], name
    assert "src/kdflow/losses" in deps["distill"]["deps"]  # the whole package: every loss registers on import
    assert not any("serving" in d for d in deps["distill"]["deps"])  # nothing the stage does not import
    assert deps["prepare"]["cmd"] == "kdflow prepare --params params.yaml --out data/prepared"


def test_pipeline_order_and_wiring():
    assert PIPELINE == ("prepare", "train_teacher", "soft_targets", "train_baseline", "distill", "finetune",
                        "evaluate", "register")
    produced = {}
    for name in PIPELINE:  # every input of a pipeline stage is produced by an earlier one
        stage = get(name)
        for port in stage.inputs:
            if port.required:
                assert port.path in produced, (name, port.name)
                assert produced[port.path] == port.kind, (name, port.name)
        produced.update({p.path: p.kind for p in stage.outputs if p.path})
    assert not BY_NAME["register"].cacheable and not BY_NAME["prepare"].cacheable


def test_a_new_stage_is_one_declaration(monkeypatch):
    from kdflow.stages import registry

    extra = Stage("calibrate", "kdflow.stages.finetune:run", "temperature-scale the student",
                  inputs=(registry.DATA, Port("student", "model", "models/final")),
                  outputs=(Port("model", "model", "models/calibrated", flag="out"),), params=("finetune",))
    monkeypatch.setattr(registry, "STAGES", (*registry.STAGES, extra))
    monkeypatch.setitem(registry.BY_NAME, "calibrate", extra)
    entry = dvc_yaml._entry(extra, {}, (), "", None)
    assert entry["cmd"] == ("kdflow calibrate --params params.yaml --data data/prepared --student models/final "
                            "--out models/calibrated")
    assert "src/kdflow/stages/finetune.py" in entry["deps"] and entry["outs"] == ["models/calibrated"]
    import kdflow.cli as cli

    monkeypatch.setattr(cli, "STAGES", registry.STAGES)
    sub = next(a for a in cli._parser()._actions if a.dest == "command").choices
    assert "calibrate" in sub


def test_bad_declarations_fail_loudly():
    with pytest.raises(ValueError, match="unknown kind 'weights'"):
        Port("x", "weights")
    with pytest.raises(KeyError, match="unknown stage 'distil'"):
        get("distil")


def test_root_components_and_pipelines_alias_the_package():
    import components
    import kdflow.kfp.components as packaged
    from pipelines import distillation

    assert distillation.build is __import__("kdflow.kfp.pipeline", fromlist=["build"]).build
    assert {n for n in dir(packaged) if not n.startswith("_")} <= set(dir(components))
