"""Bad input through the real CLI: exit code 2, one clear line, no traceback, no partial output."""

import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.helpers import TINY, tiny_dict


def kdflow(*args, cwd):
    return subprocess.run([sys.executable, "-m", "kdflow.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def assert_clean_failure(res, message, out=None):
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr
    assert any(message in ln for ln in lines), res.stderr
    assert len([ln for ln in lines if "error:" in ln]) == 1
    if out is not None:
        assert not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))


def write_params(tmp_path, raw):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_unknown_key(tmp_path):
    raw = tiny_dict()
    raw["teacher"]["train"]["epoch"] = 3
    res = kdflow("prepare", "--params", write_params(tmp_path, raw), "--out", tmp_path / "d", cwd=tmp_path)
    assert_clean_failure(res, "unknown key 'teacher.train.epoch'", tmp_path / "d")


def test_wrong_type(tmp_path):
    res = kdflow("prepare", "--params", TINY, "-S", "distill.temperature=hot", "--out", tmp_path / "d", cwd=tmp_path)
    assert_clean_failure(res, "bad value for 'distill.temperature': 'hot'", tmp_path / "d")


def test_missing_data_path(tmp_path):
    res = kdflow("train-teacher", "--params", TINY, "--data", tmp_path / "nope", "--out", tmp_path / "t", cwd=tmp_path)
    assert_clean_failure(res, "dataset directory not found", tmp_path / "t")


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.full((40, 3), np.nan), "y": np.arange(40) % 2}, "contain NaN or inf"),
    ({"x": np.ones((40, 3)), "y": np.arange(40) % 2 - 1}, "label -1 out of range"),
])
def test_bad_data(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    res = kdflow("prepare", "--params", TINY, "-S", f"data.source=npz:{tmp_path / 'bad.npz'}", "--out",
                 tmp_path / "d", cwd=tmp_path)
    assert_clean_failure(res, message, tmp_path / "d")


def test_class_count_mismatch_and_corrupt_checkpoint(tmp_path, prepared):
    from kdflow.models import build_model, save_model

    spec = {"name": "cnn1d", "kwargs": {}, "input_shape": [1, 40], "num_classes": 3, "mean": [0.0], "std": [1.0]}
    save_model(build_model(spec), tmp_path / "t3", spec)
    res = kdflow("soft-targets", "--params", TINY, "--data", prepared, "--teacher", tmp_path / "t3", "--out",
                 tmp_path / "st", cwd=tmp_path)
    assert_clean_failure(res, "has 3 classes but the dataset has 10", tmp_path / "st")

    spec["num_classes"] = 10
    save_model(build_model(spec), tmp_path / "t10", spec)
    (tmp_path / "t10" / "model.pt").write_bytes(b"\x80garbage")
    res = kdflow("soft-targets", "--params", TINY, "--data", prepared, "--teacher", tmp_path / "t10", "--out",
                 tmp_path / "st", cwd=tmp_path)
    assert_clean_failure(res, "corrupt or incompatible checkpoint", tmp_path / "st")


def test_help_lists_stages(tmp_path):
    res = kdflow("--help", cwd=tmp_path)
    assert res.returncode == 0
    for stage in ("prepare", "train-teacher", "soft-targets", "train-baseline", "distill", "finetune", "evaluate",
                  "register"):
        assert stage in res.stdout
