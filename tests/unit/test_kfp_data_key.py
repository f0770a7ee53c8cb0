"""The key prepare is cached on: a DVC revision resolved to its commit (a moved branch is a new key),
local files hashed by content, generated sources keyed by their params."""

import subprocess

import pytest

from kdflow.errors import KdflowError
from kdflow.kfp.data_key import data_key, resolve_rev
from tests.helpers import tiny_cfg


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"}).stdout.strip()


def test_a_moved_branch_is_a_new_key(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("1")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-qm", "one")
    cfg = tiny_cfg(data__repo=str(repo), data__rev="main", data__source="npz:data.npz")
    first = data_key(cfg)
    assert first["rev"] == git(repo, "rev-parse", "HEAD") == resolve_rev(str(repo), "main")
    assert data_key(cfg) == first  # unchanged: the same key, so prepare's cache hits
    (repo / "a.txt").write_text("2")
    git(repo, "commit", "-qam", "two")
    assert data_key(cfg)["key"] != first["key"]
    with pytest.raises(KdflowError, match="cannot resolve rev nope"):
        resolve_rev(str(repo), "nope")


def test_local_files_are_keyed_by_content_and_generated_data_by_params(tmp_path):
    f = tmp_path / "d.npz"
    f.write_bytes(b"abc")
    cfg = tiny_cfg(data__source=f"npz:{f}")
    k1 = data_key(cfg)
    f.write_bytes(b"abd")
    assert data_key(cfg)["key"] != k1["key"] and data_key(cfg)["content_sha256"]
    assert data_key(tiny_cfg()) == data_key(tiny_cfg())
    assert data_key(tiny_cfg(data__seed=1))["key"] != data_key(tiny_cfg())["key"]
    with pytest.raises(KdflowError, match="not found in this pod"):
        data_key(tiny_cfg(data__source=f"npz:{tmp_path / 'missing.npz'}"))
