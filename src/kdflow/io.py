"""Small file helpers: atomic output directories, JSON, content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdflow.errors import KdflowError


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temp dir beside `out`; on success it replaces `out` by rename, on failure it vanishes.

    A killed or failed stage therefore never leaves an `out` that DVC or a later stage
    would take as complete.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; outputs get the usual permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: str | Path, what: str = "file") -> dict:
    path = Path(path)
    if not path.is_file():
        raise KdflowError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise KdflowError(f"{what} {path} is not valid JSON: {exc}") from None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def require_dir(path: str | Path, what: str, marker: str) -> Path:
    """Check that an input artifact directory exists and holds its manifest."""
    path = Path(path)
    if not path.is_dir():
        raise KdflowError(f"{what} directory not found: {path}")
    if not (path / marker).is_file():
        raise KdflowError(f"{what} directory {path} has no {marker}: not a complete kdflow artifact")
    return path


def need(paths: dict[str, Path], key: str, stage: str) -> Path:
    """`paths[key]` of a stage's inputs/outputs, or one clear error naming the missing path."""
    if paths.get(key) is None:
        raise KdflowError(f"stage {stage} needs the path '{key}'")
    return Path(paths[key])
