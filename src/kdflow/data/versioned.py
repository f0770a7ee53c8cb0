"""DVC-tracked data sources: `data.source` names a path inside the git+DVC repo `data.repo` at
revision `data.rev` (branch, tag or commit; default HEAD), e.g. `npz:data/train.npz`.

The files are fetched through DVC's filesystem (git objects and the DVC remote/cache), the
revision is resolved to a commit sha and the fetched bytes are hashed, so a KFP run and a
`dvc repro` of the same revision provably train on the same data. With a data-cache volume
mounted (`KDFLOW_DATA_CACHE`), DVC keeps its object cache there across runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from kdflow.errors import KdflowError
from kdflow.names.data_sources import DATA_SOURCES, lookup

PATH_KINDS = tuple(s for s, d in DATA_SOURCES.items() if d.versioned)  # the sources a DVC repo may hold


def _open(repo: str, rev: str | None):
    """(DVC filesystem of `repo` at `rev`, the commit sha it resolved to)."""
    from dvc.api import DVCFileSystem

    cache = os.environ.get("KDFLOW_DATA_CACHE")
    config = {"cache": {"dir": str(Path(cache) / "dvc-cache")}} if cache else None
    try:
        fs = DVCFileSystem(repo, rev=rev or "HEAD", config=config)
        return fs, fs.repo.get_rev()  # opening is lazy: a bad URL or rev surfaces here
    except Exception as exc:  # scmrepo/dvc raise many types; all mean "cannot open this repo at this rev"
        raise KdflowError(f"cannot open DVC repo {repo} at rev {rev or 'HEAD'}: {exc}") from None


def content_hash(paths: list[Path]) -> str:
    """sha256 over every file under `paths` (relative name + bytes, in sorted order)."""
    h = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            h.update(str(f.relative_to(root.parent)).encode() + b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def fetch(repo: str, rev: str | None, paths: list[str], dest: Path) -> dict:
    """Copy repo paths (files or directories) at `rev` into `dest`; return the local paths,
    the resolved commit and the content hash."""
    fs, commit = _open(repo, rev)
    try:
        local = []
        for i, path in enumerate(paths):
            rpath = path.strip("/")
            if not fs.exists(rpath):
                raise KdflowError(f"{rpath} not found in {repo} at rev {rev or 'HEAD'} ({commit[:10]})")
            target = dest / str(i) / Path(rpath).name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                if fs.isdir(rpath):
                    fs.get(rpath, str(target), recursive=True)
                else:
                    fs.get_file(rpath, str(target))
            except FileNotFoundError as exc:
                raise KdflowError(f"cannot fetch {rpath} at {commit[:10]} from {repo}: {exc.strerror} "
                                  "(is a DVC remote configured at that revision, and was the data pushed?)") from None
            local.append(target)
    finally:
        fs.close()
    return {"paths": local, "rev": commit, "content_sha256": content_hash(local)}


def load_versioned(cfg, load_source: Callable) -> object:
    """`load_source` for a DVC-tracked source: fetch, load the local copy, record the provenance in
    `Raw.info` (which prepare writes to dataset.json): rev (resolved commit), repo, requested_rev,
    content_sha256."""
    source, arg = lookup(cfg.source)
    if source is None or not source.versioned or not arg:
        raise KdflowError(f"data.repo needs a path source ({', '.join(DATA_SOURCES[k].form for k in PATH_KINDS)}), "
                          f"got '{cfg.source}'")
    kind = source.scheme
    dest = Path(tempfile.mkdtemp(prefix="kdflow-dvc-"))
    try:
        got = fetch(cfg.repo, cfg.rev, [str(p) for p in source.local_paths(arg)], dest)
        local = cfg.model_copy(update={"source": f"{kind}:" + ",".join(str(p) for p in got["paths"]),
                                       "repo": None, "rev": None})
        raw = load_source(local)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    raw.info.update({"rev": got["rev"], "repo": cfg.repo, "requested_rev": cfg.rev or "HEAD",
                     "content_sha256": got["content_sha256"], "repo_path": arg})
    return raw
