"""The component image's Dockerfile: hadolint-clean, configurable base, pinned dependencies, and a final
stage that runs as non-root without build tools. (Building it: tests/integration/test_image.py.)"""

import re
import shutil
import subprocess
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from tests.helpers import REPO

DOCKERFILE = REPO / "Dockerfile"
REQUIREMENTS = REPO / "docker" / "requirements.txt"


def stages() -> list[list[str]]:
    """Instructions per build stage (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    out: list[list[str]] = []
    for ln in lines:
        if ln.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(ln)
    return out


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed")
def test_hadolint_clean():
    out = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_base_image_is_an_argument_shared_by_both_stages():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}$", text, re.M)  # by digest
    build, final = stages()
    assert build[0] == "FROM ${BASE_IMAGE} AS build" and final[0] == "FROM ${BASE_IMAGE}"


def test_final_stage_is_non_root_without_build_tools():
    final = stages()[-1]
    users = [ln for ln in final if ln.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("0", "root")
    assert any(ln.startswith("COPY --from=build /opt/venv") for ln in final)
    joined = " ".join(final)
    for tool in ("gcc", "g++", "build-essential", "apt-get install", "pip install", "make "):
        assert tool not in joined, tool


def test_requirements_are_pinned_and_cover_the_runtime_dependencies():
    pins = {}
    text = re.sub(r"\\\n\s*", " ", REQUIREMENTS.read_text())  # continuation lines joined
    for line in text.splitlines():
        if line and not line.startswith("#"):
            spec_text, *hashes = line.split(" --hash=")
            req = Requirement(spec_text)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            # hash-checking mode is all or nothing: every pin carries the sha256 of its files
            assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h.strip()) for h in hashes), spec_text
            pins[req.name.lower().replace("_", "-")] = spec.version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # the image serves text models too: the `text` extra is part of its closure
    for dep in project["dependencies"] + project["optional-dependencies"]["text"]:
        req = Requirement(dep)
        if req.marker is None or req.marker.evaluate():
            assert req.name.lower().replace("_", "-") in pins, f"{req.name} is not pinned in {REQUIREMENTS}"
    assert pins["torch"] == metadata.version("torch").split("+")[0]
    assert pins["kfp"] == metadata.version("kfp")


def test_build_context_is_whitelisted():
    ignore = (REPO / ".dockerignore").read_text().split()
    assert "*" in ignore  # everything excluded first ...
    for needed in ("!pyproject.toml", "!src/", "!docker/requirements.txt"):
        assert needed in ignore  # ... then only what the build copies
