"""Real dvc: after editing a loss file, `dvc status` reports distill and what follows it, never prepare or
the teacher (issue 23). The pipeline is not run: stand-in outputs are committed to a dvc.lock
(`dvc commit`), which is all `dvc status` compares against."""

import json
import subprocess

import pytest
import yaml

from tests.helpers import TINY, repo_copy

pytestmark = pytest.mark.integration


def sh(*cmd, cwd, env) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def _outs(entry: dict) -> list[str]:
    paths = []
    for key in ("outs", "metrics", "plots"):
        for item in entry.get(key, []):
            paths.append(next(iter(item)) if isinstance(item, dict) else item)
    return paths


def downstream(stages: dict, start: str) -> set[str]:
    made = {p: name for name, e in stages.items() for p in _outs(e)}
    after, todo = {start}, [start]
    while todo:
        cur = todo.pop()
        for name, e in stages.items():
            if name not in after and any(made.get(d) == cur for d in e["deps"]):
                after.add(name)
                todo.append(name)
    return after


def test_editing_a_loss_file_makes_dvc_status_report_only_distill_and_what_follows(tmp_path):
    work, env = repo_copy(tmp_path, ("dvc.yaml", ".dvc", ".dvcignore", "src", ".gitignore"))
    (work / "params.yaml").write_text(TINY.read_text())
    stages = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]
    for entry in stages.values():  # stand-in outputs: dvc commit hashes them, nothing runs
        for out in _outs(entry):
            path = work / out
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}\n")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "stand-in").write_text(out)
    sh("dvc", "commit", "-f", "-q", cwd=work, env=env)
    assert json.loads(sh("dvc", "status", "--json", cwd=work, env=env) or "{}") == {}

    loss = work / "src" / "kdflow" / "losses" / "dkd.py"
    loss.write_text(loss.read_text() + "\n# edited\n")
    changed = set(json.loads(sh("dvc", "status", "--json", cwd=work, env=env)))
    assert "distill" in changed
    assert changed <= downstream(stages, "distill"), changed - downstream(stages, "distill")
    assert not changed & {"prepare", "train_teacher", "soft_targets", "train_baseline"}
