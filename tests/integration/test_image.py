"""The component image built for real: a Debian bookworm base made with debootstrap (no registry is
reachable), the Dockerfile fed by an offline wheelhouse, then a stage and a KFP component run
inside the image with no network. Slow and needs root + dockerd, so it runs only with
KDFLOW_IMAGE_TEST=1 (`make image-test`)."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from kdflow.io import read_json
from tests.helpers import REPO, tiny_dict

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.environ.get("KDFLOW_IMAGE_TEST") != "1",
                                 reason="image build takes minutes: set KDFLOW_IMAGE_TEST=1 (make image-test)")]
BASE = os.environ.get("KDFLOW_TEST_BASE_IMAGE", "kdflow-base:bookworm")
TAG = "kdflow:image-test"


def sh(*args, timeout=3600, **kw) -> str:
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
    assert out.returncode == 0, f"{args}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def docker_up() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    """A reachable Docker daemon; one is started here (and stopped by its PID) when none runs."""
    if docker_up():
        yield
        return
    if shutil.which("dockerd") is None or shutil.which("debootstrap") is None:
        pytest.skip("needs docker.io and debootstrap (apt-get install -y docker.io debootstrap)")
    log = open(tmp_path_factory.mktemp("dockerd") / "dockerd.log", "w")
    proc = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not docker_up():
            assert proc.poll() is None and time.monotonic() < deadline, "dockerd did not come up"
            time.sleep(2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        log.close()


@pytest.fixture(scope="module")
def image(dockerd):
    t0 = time.perf_counter()
    sh(REPO / "docker" / "build-base.sh", BASE)  # no-op when the base exists
    sh(REPO / "docker" / "wheelhouse.sh")  # tops up wheels for new pins; present files are kept
    t1 = time.perf_counter()
    sh("docker", "build", "--build-arg", f"BASE_IMAGE={BASE}", "--build-arg", "PIP_NO_INDEX=1", "-t", TAG, REPO)
    t2 = time.perf_counter()
    size = int(sh("docker", "image", "inspect", "--format", "{{.Size}}", TAG).strip())
    print(f"\nbase + wheelhouse {t1 - t0:.0f} s, image build {t2 - t1:.0f} s, size {size / 1e9:.2f} GB")
    return TAG


@pytest.fixture()
def workdir(tmp_path):
    tmp_path.chmod(0o777)  # the image's user (uid 10001) writes here through the bind mount
    params = {k: v for k, v in tiny_dict().items() if k != "kubeflow"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_image_runs_as_non_root_without_build_tools(image):
    config = json.loads(sh("docker", "image", "inspect", "--format", "{{json .Config}}", image))
    assert config["User"] == "10001:10001"
    assert any(e.startswith("PATH=/opt/venv/bin") for e in config["Env"])
    probe = "for tool in gcc cc g++ make; do command -v $tool; done; id -u"
    out = sh("docker", "run", "--rm", "--network", "none", image, "sh", "-c", probe)
    assert out.split() == ["10001"]  # no compiler found, non-root user


def test_stage_runs_offline_and_matches_the_host(image, workdir, prepared):
    sh("docker", "run", "--rm", "--network", "none", "-v", f"{workdir}:/work", "-w", "/work",
       "-e", "MLFLOW_TRACKING_URI=sqlite:////work/mlflow.db", image,
       "kdflow", "prepare", "--params", "/work/params.yaml", "--out", "/work/data", timeout=900)
    inside = read_json(workdir / "data" / "dataset.json")
    assert inside["hash"] == read_json(prepared / "dataset.json")["hash"]  # same bytes in and out of the image


def test_kfp_component_runs_in_the_image(image, workdir, prepared):
    """resolve_params → data_version → prepare, executed by kfp.local's DockerRunner in the image, offline."""
    script = f"""
import glob, json, os, yaml
from kfp import dsl, local
from kdflow.kfp.components import load
image = os.environ["KDFLOW_IMAGE"]

@dsl.pipeline(name="image-check")
def check(params_yaml: str):
    r = load("resolve_params")(params_yaml=params_yaml, data_rev="", teacher_epochs=1, distill_epochs=1,
                               temperature=4.0, alpha=0.9, teacher_uri="", data_uri="", imports=[])
    v = load("data_version")(params=r.outputs["params"])
    d = load("prepare")(params=r.outputs["params"], data_key=v.output, scratch="")
    for t in (r, v, d):
        t.set_container_image(image)

local.init(runner=local.DockerRunner(network_mode="none"), pipeline_root={str(workdir / "root")!r})
check(params_yaml=open({str(workdir / "params.yaml")!r}).read())
(manifest,) = glob.glob({str(workdir / "root")!r} + "/**/prepare/data/dataset.json", recursive=True)
print("HASH", json.load(open(manifest))["hash"])
"""
    (workdir / "root").mkdir(mode=0o777)
    (workdir / "root").chmod(0o777)
    out = sh(sys.executable, "-c", script, env={**os.environ, "KDFLOW_IMAGE": image}, timeout=900)
    got = [ln.split()[1] for ln in out.splitlines() if ln.startswith("HASH ")]
    assert got == [read_json(prepared / "dataset.json")["hash"]]
