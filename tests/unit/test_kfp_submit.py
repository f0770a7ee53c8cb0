"""`kdflow pipeline submit` against a stand-in KFP API server over real HTTP (tests/support/kfp_api.py:
the v2beta1 REST shapes, strict parsing of the upload with a backend release's schemas, multi-user
namespace rules): standalone and profile-namespace submits, --wait to the final state with the failed
task named, the timeout, a package the server's release refuses, and the exit handler reading the
failed task from the run API."""

import pytest
import yaml
from mlflow import MlflowClient

from kdflow.kfp import runs
from kdflow.kfp.cli import main
from kdflow.kfp.run_status import record
from tests.helpers import REPO
from tests.support.kfp_api import FakeKFP

TINY = str(REPO / "tests" / "params-tiny.yaml")
IMAGE = "registry.example/kdflow:1@sha256:" + "c" * 64


def submit(fake, *args):
    return main(["submit", "--params", TINY, "--image", IMAGE, "--host", fake.url, "--poll", "0.01", *args])


def test_standalone_submit_waits_and_names_the_failed_task(capsys):
    with FakeKFP(states=("PENDING", "RUNNING", "RUNNING", "FAILED")) as fake:
        code = submit(fake, "--wait", "--arg", "temperature=2")
        out, err = capsys.readouterr()
    assert code == 1
    assert "run run-" in out and "RUNNING" in out and '"state": "FAILED"' in out
    assert "FAILED: distill: KdflowError: distill.temperature must be > 0 (pod kdflow-distillation-x-distill-2)" in err
    upload = [q for m, p, q in fake.requests if p.endswith("/pipelines/upload")]
    assert upload and "namespace" not in upload[0]  # standalone: a shared pipeline
    assert fake.pipelines[0]["namespace"] == "" and fake.experiments[0]["display_name"] == "kdflow-tests"


def test_success_exits_zero_and_a_second_submit_adds_a_version(capsys):
    with FakeKFP() as fake:
        assert submit(fake, "--wait") == 0
        assert submit(fake) == 0  # no --wait: returns once the run is created
        capsys.readouterr()
    assert len(fake.pipelines) == 1 and len(fake.versions[fake.pipelines[0]["pipeline_id"]]) == 2
    assert len(fake.experiments) == 1 and len(fake.runs) == 2


def test_multi_user_submit_goes_into_the_profile_namespace(capsys):
    with FakeKFP(multi_user=True) as fake:
        assert submit(fake) == 2
        assert "multi-user: pass --namespace" in capsys.readouterr().err
        assert submit(fake, "--namespace", "team-a", "--wait") == 0
        assert submit(fake, "--namespace", "team-a") == 0
        capsys.readouterr()
    assert [(p["namespace"], p["display_name"]) for p in fake.pipelines] == [("team-a", "kdflow-distillation")]
    assert [e["namespace"] for e in fake.experiments] == ["team-a"]
    uploads = [q for m, p, q in fake.requests if p.endswith("/pipelines/upload")]
    assert [q.get("namespace") for q in uploads] == ["team-a"]


def test_the_servers_release_refuses_fields_it_does_not_know(capsys):
    """The default package needs 2.16 (securityContext); a 2.15 server refuses it, and the same
    pipeline compiled with kubeflow.kfp_backend=2.15 is accepted."""
    with FakeKFP(release="2.15.0") as fake:
        assert submit(fake) == 2
        err = capsys.readouterr().err
        assert "invalid pipeline spec (2.15.0)" in err and "securityContext" in err
        assert submit(fake, "-S", "kubeflow.kfp_backend=2.15") == 0


def test_wait_gives_up_after_the_timeout(capsys):
    with FakeKFP(states=("RUNNING",)) as fake:
        assert submit(fake, "--wait", "--timeout", "0.2") == 2
    assert "is still RUNNING after 0.2s" in capsys.readouterr().err


def test_exit_handler_reads_the_failed_task_from_the_run_api(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    # what the backend sends: the exit handler DAG's state and name, no error
    status = {"state": "FAILED", "pipeline_job_resource_name": "kdflow-distillation-x",
              "pipeline_task_name": "exit-handler-1", "error_code": 0, "error_message": ""}
    with FakeKFP() as fake:
        from tests.support.kfp_api import FAILED_TASKS

        run_id = fake.add_run(["FAILED"], FAILED_TASKS)
        monkeypatch.setenv(runs.API_ENV, fake.url)
        tags = client.get_run(record("{}", status, run_id)["run_id"]).data.tags
    assert tags["kdflow.failed_task"] == "distill" and tags["kdflow.kfp_run_id"] == run_id
    assert tags["kdflow.error"].startswith("distill: KdflowError: distill.temperature must be > 0")
    assert tags["kdflow.kfp_task"] == "exit-handler-1" and "kdflow.lookup_error" not in tags
    # an API the pod cannot reach: still a record, saying why the task is unknown
    monkeypatch.setenv(runs.API_ENV, "http://127.0.0.1:9")
    tags = client.get_run(record("{}", status, "run-x")["run_id"]).data.tags
    assert tags["kdflow.pipeline_status"] == "FAILED" and "kdflow.failed_task" not in tags
    assert tags["kdflow.lookup_error"]


@pytest.mark.parametrize("placeholder", ["", "{{$.pipeline_job_uuid}}"])
def test_no_lookup_without_a_backend_run_id(placeholder):
    assert "not on a KFP backend" in runs.lookup(placeholder)["lookup_error"]


def test_compiled_exit_handler_gets_the_run_id(tmp_path):
    from kdflow.kfp.entrypoints import compile_pipeline
    from tests.helpers import tiny_dict

    spec = next(yaml.safe_load_all(compile_pipeline(tiny_dict(), tmp_path / "p.yaml", IMAGE).read_text()))
    (task,) = [t for t in spec["root"]["dag"]["tasks"].values() if t["componentRef"]["name"] == "comp-record-status"]
    assert task["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
