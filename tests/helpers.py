"""Shared test helpers: the tiny profile as a dict or a validated config."""

import subprocess
import sys
from pathlib import Path

import yaml

TESTS = Path(__file__).parent
REPO = TESTS.parent
TINY = TESTS / "params-tiny.yaml"


def fresh_python(code: str) -> None:
    """Run `code` in a new interpreter (what it imports is then its own doing); fail with its stderr."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def repo_copy(tmp_path: Path, items: tuple[str, ...]) -> tuple[Path, dict]:
    """`items` of the repo copied into a fresh git work tree, and an environment whose PATH has the venv."""
    import os
    import shutil
    import subprocess
    import sys

    work = tmp_path / "repo"
    work.mkdir()
    for item in items:
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "init", "-q"], cwd=work, env=env, check=True)
    return work, env


def tiny_dict(**overrides) -> dict:
    from kdflow.config import set_key

    raw = yaml.safe_load(TINY.read_text())
    for k, v in overrides.items():
        set_key(raw, k.replace("__", "."), v)
    return raw


def tiny_cfg(**overrides):
    from kdflow.config import validate

    return validate(tiny_dict(**overrides))
