"""DVC-tracked data at a git revision, from a real git + DVC repo (and a DVC remote) in a tmp dir:
the bytes of that revision, the resolved commit and a content hash that names them."""

import hashlib
import shutil
import subprocess

import numpy as np
import pytest

from kdflow.config import Data
from kdflow.data.sources import load_source
from kdflow.data.versioned import fetch, load_versioned
from kdflow.errors import KdflowError

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def sh(cwd, *args):
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


def write_npz(path, n, seed):
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.normal(size=(n, 1, 12)).astype(np.float32), y=rng.integers(0, 3, n))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Two commits of data/d.npz (120 then 150 samples), pushed to a local DVC remote."""
    root = tmp_path_factory.mktemp("dvcrepo")
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.email", "t@example.com")
    sh(root, "git", "config", "user.name", "test")
    sh(root, "dvc", "init", "-q")
    sh(root, "dvc", "remote", "add", "-d", "store", str(tmp_path_factory.mktemp("remote")))
    (root / "data").mkdir()
    revs, digests = [], []
    for n, seed in ((120, 0), (150, 1)):
        digests.append(write_npz(root / "data" / "d.npz", n, seed))
        sh(root, "dvc", "add", "-q", "data/d.npz")
        sh(root, "git", "add", "-A")
        sh(root, "git", "commit", "-qm", f"{n} samples")
        sh(root, "dvc", "push", "-q")
        revs.append(sh(root, "git", "rev-parse", "HEAD"))
    sh(root, "git", "tag", "v1", revs[0])
    return root, revs, digests


def test_fetch_returns_the_bytes_of_that_revision(repo, tmp_path):
    root, revs, digests = repo
    got = fetch(str(root), "v1", ["data/d.npz"], tmp_path)
    (path,) = got["paths"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[0]  # not the working tree's v2
    assert got["rev"] == revs[0]
    head = fetch(str(root), None, ["data/d.npz"], tmp_path / "head")
    assert head["rev"] == revs[1] and head["content_sha256"] != got["content_sha256"]


def test_clone_through_the_dvc_remote_gives_the_same_content(repo, tmp_path):
    """A pipeline pod has no checkout: it clones the git URL and pulls from the DVC remote."""
    root, revs, _ = repo
    local = fetch(str(root), revs[1], ["data/d.npz"], tmp_path / "a")
    cloned = fetch(f"file://{root}", revs[1], ["data/d.npz"], tmp_path / "b")
    assert cloned["rev"] == local["rev"] == revs[1]
    assert cloned["content_sha256"] == local["content_sha256"]


def test_load_versioned_records_provenance(repo):
    root, revs, _ = repo
    cfg = Data(source="npz:data/d.npz", repo=str(root), rev="v1")
    raw = load_versioned(cfg, load_source)
    assert raw.x.shape == (120, 1, 12)
    assert raw.info["rev"] == revs[0] and raw.info["requested_rev"] == "v1"
    assert raw.info["repo"] == str(root) and raw.info["repo_path"] == "data/d.npz"
    again = load_versioned(cfg, load_source)
    assert again.info["content_sha256"] == raw.info["content_sha256"]
    np.testing.assert_array_equal(again.x, raw.x)


def test_errors_name_the_problem(repo, tmp_path):
    root, _, _ = repo
    with pytest.raises(KdflowError, match="not found in"):
        fetch(str(root), "v1", ["data/missing.npz"], tmp_path)
    with pytest.raises(KdflowError, match="cannot open DVC repo"):
        fetch(str(root), "no-such-tag", ["data/d.npz"], tmp_path)
    with pytest.raises(KdflowError, match="path source"):
        load_versioned(Data(source="mnist1d", repo=str(root)), load_source)
