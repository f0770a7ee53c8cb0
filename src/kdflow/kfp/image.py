"""The kdflow image reference, from one place: `manifests/image/kustomization.yaml`, a kustomize
Component whose `images:` entry rewrites the serving and controller Deployments' `kdflow` image.
`kdflow pipeline compile` reads the same entry for every pipeline step and the training job, so the
cluster runs one image everywhere. `make push` records the pushed digest there.

Order: `--image` > `KDFLOW_IMAGE` > the checkout's manifests/image > ghcr.io/kdflow/kdflow:<version>
(an installed kdflow outside a checkout).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from kdflow import __version__
from kdflow.errors import KdflowError

NAME = "kdflow"  # the placeholder image name in manifests/serving and manifests/controller
KUSTOMIZE = Path("manifests") / "image" / "kustomization.yaml"
DEFAULT = f"ghcr.io/kdflow/kdflow:{__version__}"
_REF = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._/:-]*?)(?::(?P<tag>[\w][\w.-]{0,127}))?"
                  r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


def component_file(root: Path | None = None) -> Path | None:
    roots = [root] if root else [Path.cwd(), Path(__file__).resolve().parents[3]]
    for r in roots:
        if (r / KUSTOMIZE).is_file():
            return r / KUSTOMIZE
    return None


def parse(ref: str) -> dict[str, str | None]:
    """{'name', 'tag', 'digest'} of an image reference; a bad one is refused with the reason."""
    m = _REF.match(ref.strip())
    if not m or not (m["tag"] or m["digest"]):
        raise KdflowError(f"image {ref!r}: expected REGISTRY/REPO:TAG or REGISTRY/REPO[:TAG]@sha256:<64 hex>")
    return {"name": m["name"], "tag": m["tag"], "digest": m["digest"]}


def _entry(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text()) or {}
    for e in doc.get("images") or []:
        if e.get("name") == NAME:
            return e
    raise KdflowError(f"{path}: no images entry named {NAME!r}")


def reference(root: Path | None = None) -> str:
    """The image every step, the training job and the Deployments run (digest-pinned when known)."""
    if os.environ.get("KDFLOW_IMAGE"):
        return os.environ["KDFLOW_IMAGE"]
    path = component_file(root)
    if path is None:
        return DEFAULT
    e = _entry(path)
    ref = e.get("newName") or NAME
    if e.get("newTag"):
        ref += f":{e['newTag']}"
    if e.get("digest"):
        ref += f"@{e['digest']}"
    return ref


def record(ref: str, root: Path | None = None) -> Path:
    """Write `ref` (REPO:TAG[@sha256:...]) into manifests/image, the one place compile and kustomize read."""
    parts = parse(ref)
    path = component_file(root)
    if path is None:
        raise KdflowError(f"{KUSTOMIZE} not found: run from the kdflow checkout")
    doc = yaml.safe_load(path.read_text())
    entry = {"name": NAME, "newName": parts["name"]}
    if parts["tag"]:
        entry["newTag"] = parts["tag"]
    if parts["digest"]:
        entry["digest"] = parts["digest"]
    doc["images"] = [entry]
    header = "".join(line + "\n" for line in path.read_text().splitlines() if line.startswith("#"))
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    return path


# Every component's decorator arguments. The base image is a fixed name so the committed component
# YAMLs do not change with each push; `compile` sets the real reference on every task. kfp is baked
# into the image: never pip-install it at run time (clusters may have no index access).
COMPONENT = {"base_image": DEFAULT, "install_kfp_package": False}
