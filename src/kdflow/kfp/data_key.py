"""The data version key that `prepare` is cached on.

KFP's cache key of a step is its inputs (parameter values and input artifact ids), image and command.
`prepare` reads data from outside the pipeline, so its params alone do not say which data it
reads: a branch moves, a file behind a path changes. The uncached `data_version` step computes this
key cheaply — the commit a DVC revision resolves to, or the bytes of every local file the data section
names (the source's paths as `kdflow.names.data_sources` declares them, a text source's test and transfer
sources, the tokenizer directories) — and `prepare`
takes it as a parameter: an unchanged re-run hits the cache, so every downstream step sees the same
artifact ids and hits too; changed data misses from `prepare` on.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

from kdflow.config import Data, Params
from kdflow.data.versioned import content_hash
from kdflow.errors import KdflowError
from kdflow.names.data_sources import lookup

_SHA = re.compile(r"^[0-9a-f]{40}$")


def resolve_rev(repo: str, rev: str | None) -> str:
    """The commit `rev` (branch, tag, commit; default HEAD) of `repo` resolves to, without cloning."""
    rev = rev or "HEAD"
    if _SHA.match(rev):
        return rev
    if Path(repo).is_dir():
        cmd = ["git", "-C", repo, "rev-parse", "--verify", f"{rev}^{{commit}}"]
    else:
        cmd = ["git", "ls-remote", repo, rev]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise KdflowError(f"cannot resolve rev {rev} of {repo}: {detail.strip()[:300]}") from None
    if not out or not _SHA.match(out[0]):
        raise KdflowError(f"rev {rev} not found in {repo} (use a branch, a tag or a full commit sha)")
    return out[0]


def local_paths(d: Data) -> list[Path]:
    """Every local file or directory `prepare` reads for this data section (keyed on their bytes)."""
    paths: list[Path] = []
    for spec in (d.source, *((d.text.test, d.text.transfer) if d.text else ())):
        source, arg = lookup(spec or "")
        if source is not None:
            paths += source.local_paths(arg)
    if d.text is not None:
        paths += [Path(p) for p in (d.text.tokenizer, d.text.student_tokenizer) if p]
    return paths


def data_key(cfg: Params) -> dict:
    """{'key': sha256 hex, 'rev': resolved commit or None, 'content_sha256': local files' hash or None}."""
    data = cfg.data.model_dump(mode="json")
    rev = content = None
    if cfg.data.repo:
        rev = data["rev"] = resolve_rev(cfg.data.repo, cfg.data.rev)
    elif paths := local_paths(cfg.data):
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise KdflowError(f"data.source {cfg.data.source}: {missing} not found in this pod; put the data "
                              "in a DVC repo (data.repo/data.rev) or on the data-cache PVC, or import a "
                              "prepared dataset (data_uri)")
        content = content_hash(paths)
    blob = json.dumps({"data": data, "content": content}, sort_keys=True).encode()
    return {"key": hashlib.sha256(blob).hexdigest(), "rev": rev, "content_sha256": content}
