"""Stage outputs through the real CLI: missing parent directories are made by the one atomic writer."""

import json

from tests.helpers import TINY
from tests.unit.test_cli_errors import kdflow


def test_prepare_out_with_missing_parents(tmp_path):
    res = kdflow("prepare", "--params", TINY, "--out", "a/b", cwd=tmp_path)  # relative, neither a/ nor a/b exists
    assert res.returncode == 0, res.stderr
    out = tmp_path / "a" / "b"
    assert json.loads((out / "dataset.json").read_text())["counts"]["train"] > 0
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b"]  # no temp dir left beside it
