"""Real `dvc repro` of the repo's dvc.yaml on the tiny profile, then a one-param experiment."""

import json
import re
import subprocess

import pytest
import yaml

from kdflow.stages.registry import PIPELINE
from tests.helpers import TINY, repo_copy

pytestmark = pytest.mark.integration

ALL = list(PIPELINE)


def sh(*cmd, cwd, env):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", output)


def test_dvc_repro_then_experiment_reruns_only_downstream(tmp_path):
    work, env = repo_copy(tmp_path, ("dvc.yaml", ".dvc", ".dvcignore", "src", ".gitignore"))
    # finetune epochs 0, params.yaml's default: the pass-through must still write every declared output
    params = yaml.safe_load(TINY.read_text())
    params["finetune"]["train"]["epochs"] = 0
    (work / "params.yaml").write_text(yaml.safe_dump(params))

    out = sh("dvc", "repro", cwd=work, env=env)
    assert ran(out) == ALL
    metrics = json.loads((work / "metrics" / "metrics.json").read_text())
    for key in ("teacher.accuracy", "baseline.accuracy", "student.accuracy", "student.ece", "retention",
                "kd_gain", "compression", "speedup", "student.latency_p50_ms", "student.flops"):
        assert key in metrics
    assert "up to date" in sh("dvc", "status", cwd=work, env=env)

    sh("git", "add", "-A", cwd=work, env=env)
    sh("git", "commit", "-qm", "baseline run", cwd=work, env=env)
    out = sh("dvc", "exp", "run", "-S", "distill.temperature=8", cwd=work, env=env)
    assert ran(out) == ["distill", "finetune", "evaluate", "register"]
    shown = sh("dvc", "exp", "show", "--json", cwd=work, env=env)
    assert '"temperature": 8' in shown.replace("8.0", "8")
