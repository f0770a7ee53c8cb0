"""Every distillation method end to end on tiny data, through the same stage functions the CLI/DVC/KFP call.

One epoch per student: these check wiring, artifacts and lineage, not accuracy (benchmarks do that).
"""

import json
import subprocess

import pytest
import yaml

from kdflow.cli import main as kdflow_main
from kdflow.models import load_model
from kdflow.soft_target_store import read_store
from kdflow.stages import born_again, distill, evaluate, soft_targets, train_baseline, train_teacher
from kdflow.stages.registry import run_stage
from tests.helpers import REPO, repo_copy, tiny_cfg

pytestmark = pytest.mark.integration
ONE = {"distill__train__epochs": 1}


@pytest.fixture(scope="module")
def base(prepared, tmp_path_factory):
    d = tmp_path_factory.mktemp("methods")
    cfg = tiny_cfg()
    train_teacher.run(cfg, {"data": prepared}, {"model": d / "teacher"})
    soft_targets.run(cfg, {"data": prepared, "teacher": d / "teacher"}, {"soft_targets": d / "st"})
    train_baseline.run(cfg, {"data": prepared}, {"model": d / "baseline"})
    return d, {"data": prepared, "soft_targets": d / "st", "teacher": d / "teacher"}


def run_distill(base, name, **overrides):
    d, inputs = base
    out = distill.run(tiny_cfg(**ONE, **overrides), inputs, {"model": d / name})
    model, spec = load_model(d / name)
    assert spec["role"] == "student" and out["epochs_run"] == 1
    return out, spec


def test_dkd(base):
    out, spec = run_distill(base, "dkd", distill__loss="dkd", distill__alpha=0.5, distill__loss_params={"nckd": 4.0})
    assert out["loss"] == "dkd" and spec["lineage"]["teachers"][0]["name"] == "cnn1d"


def test_fitnets_hints_with_cached_logits(base):
    pairs = [{"student": "features.2", "teacher": "features.4", "params": {"loss": "mse"}},
             {"student": "features.5", "teacher": "features.5", "params": {"loss": "cosine"}, "weight": 0.5}]
    _, spec = run_distill(base, "hint", distill__features=pairs)
    assert [f["student"] for f in spec["lineage"]["features"]] == ["features.2", "features.5"]
    assert spec["lineage"]["soft_targets"]  # the output term still reads the cache
    assert "adapters" not in json.dumps(spec)  # adapters train with the student but are not saved


def test_attention_transfer(base):
    run_distill(base, "at", distill__features=[{"method": "attention", "student": "features.3",
                                                "teacher": "features.3", "weight": 100.0}])


def test_unknown_feature_path_fails_before_training(base):
    from kdflow.errors import KdflowError

    with pytest.raises(KdflowError, match="student module 'layer3' not found.*available: features, features.0"):
        run_distill(base, "bad", distill__features=[{"student": "layer3", "teacher": "features.4"}])


def test_online_teacher_with_augmentation(base):
    _, spec = run_distill(base, "online", soft_targets__mode="online",
                          distill__train__augment={"enabled": True, "shift": 3, "noise": 0.05})
    assert spec["lineage"]["teacher"] and "soft_targets" not in spec["lineage"]


def test_transfer_set_with_labeled_fraction(base):
    out, _ = run_distill(base, "mix", distill__labeled_fraction=0.5)
    assert out["transfer_samples"] == 300


def test_bf16_mixed_through_the_stage(base):
    run_distill(base, "bf16", distill__train__precision="bf16-mixed")


def test_multi_teacher_ensemble(base):
    d, inputs = base
    cfg = tiny_cfg(**ONE, ensemble__teachers={"mlp": {"seed": 1, "model": {"name": "mlp", "kwargs": {"hidden": [32]}},
                                                      "train": {"epochs": 1, "progress_bar": False}}},
                   ensemble__weights=[2.0, 1.0])
    run_stage("teacher_pool_member", cfg, {"data": inputs["data"]},
              {"model": d / "pool-models" / "mlp", "soft_targets": d / "pool" / "mlp"}, member="mlp")
    run_stage("combine_teachers", cfg, {"data": inputs["data"], "main": d / "st", "pool": d / "pool"},
              {"soft_targets": d / "ens"})
    _, _, manifest = read_store(d / "ens")
    assert manifest["num_teachers"] == 2 and [t["member"] for t in manifest["teachers"]] == ["main", "mlp"]
    distill.run(cfg, {**inputs, "soft_targets": d / "ens"}, {"model": d / "ens-student"})
    lineage = load_model(d / "ens-student")[1]["lineage"]
    assert lineage["ensemble"]["weights"] == [2.0, 1.0] and len(lineage["teachers"]) == 2


def test_born_again_two_generations_and_evaluate(base):
    d, inputs = base
    cfg = tiny_cfg(**ONE, born_again__generations=2)
    out = born_again.run(cfg, {"data": inputs["data"], "teacher": d / "baseline"}, {"generations": d / "ba"})
    assert [g["generation"] for g in out["generations"]] == [0, 1, 2]
    spec = load_model(d / "ba" / "gen-2")[1]
    assert spec["lineage"]["born_again"] == {"generation": 2, "parent": "gen-1", "gen0": str(d / "baseline")}
    assert spec["name"] == load_model(d / "baseline")[1]["name"]  # same architecture every generation
    evaluate.run(cfg, {"data": inputs["data"], "teacher": d / "teacher", "baseline": d / "baseline",
                       "student": d / "ba" / "gen-2"}, {"metrics": d / "ba-metrics"})
    m = json.loads((d / "ba-metrics" / "metrics.json").read_text())
    for k in (0, 1, 2):
        assert f"born_again.gen{k}.accuracy" in m
    assert m["born_again.gen2.accuracy"] == pytest.approx(m["student.accuracy"])
    assert m["compress.onnx.max_abs_dlogit"] < 1e-3 and m["compress.int8.size_bytes"] > 0
    assert m["compress.fp32.accuracy"] == pytest.approx(m["student.accuracy"])
    html = (d / "ba-metrics" / "report.html").read_text()
    assert "Born-again generations" in html and "Compression" in html


def test_sweep_cli_then_distill_from_sweep(base, tmp_path, capsys):
    d, inputs = base
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_cfg().model_dump(mode="json")))
    rc = kdflow_main(["sweep", "--params", str(params), "--data", str(inputs["data"]), "--soft-targets",
                     str(inputs["soft_targets"]), "--out", str(tmp_path / "sweep"),
                     "-S", "sweep.space={temperature: [2, 8], alpha: [0.5]}", "-S", "sweep.epochs=1"])
    printed = capsys.readouterr().err
    assert rc == 0 and "-S distill.temperature=" in printed
    rows = (tmp_path / "sweep" / "trials.csv").read_text().splitlines()
    assert rows[0] == "trial,temperature,alpha,val_acc,epochs,seconds" and len(rows) == 3
    best = yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert summary["split"] == "val" and summary["best"] == best["overrides"]
    out = distill.run(tiny_cfg(**ONE, distill__from_sweep=str(tmp_path / "sweep" / "best.yaml")), inputs,
                      {"model": d / "swept"})
    assert out["temperature"] == best["overrides"]["temperature"] and out["alpha"] == 0.5
    assert kdflow_main(["sweep", "--params", str(params), "--data", str(inputs["data"]), "--soft-targets",
                       str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2


def test_methods_dvc_yaml_resolves(tmp_path):
    """methods/dvc.yaml interpolates against the repo's params.yaml: one teacher_pool stage per member."""
    work, env = repo_copy(tmp_path, ("dvc.yaml", "params.yaml", ".dvc", "methods"))
    res = subprocess.run(["dvc", "stage", "list", "methods/dvc.yaml"], cwd=work, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    members = yaml.safe_load((REPO / "params.yaml").read_text())["ensemble"]["teachers"]
    for name in [*(f"teacher_pool@{m}" for m in members), "combine_teachers", "distill_ensemble",
                 "evaluate_ensemble", "born_again", "evaluate_born_again", "sweep"]:
        assert f"methods/dvc.yaml:{name}" in res.stdout
