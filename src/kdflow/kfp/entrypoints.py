"""Compile, run locally (kfp.local), or submit the pipeline to a KFP server. `kdflow pipeline` calls these."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import warnings
from pathlib import Path

import yaml

from kdflow.errors import KdflowError
from kdflow.kfp import backend
from kdflow.kfp.params import split
from kdflow.kfp.pipeline import NAME, build


def compile_pipeline(raw_params: dict, out: str | Path, image: str | None = None) -> Path:
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build(raw_params, image), str(out))
    target = split(raw_params)[1].kfp_backend
    if not backend.supports(target, backend.OPTIONAL_SECRET):  # fields kfp-kubernetes writes regardless
        header = "".join(line + "\n" for line in out.read_text().splitlines() if line.startswith("#"))
        spec, *platform = yaml.safe_load_all(out.read_text())
        docs = [spec, *(backend.lower(p, target) for p in platform)]
        out.write_text(header + yaml.safe_dump_all(docs, sort_keys=False))
    return out


def run_local(raw_params: dict, root: str | Path, cache: bool = False, **arguments) -> Path:
    """The whole pipeline through kfp.local in this environment (SubprocessRunner, no venv, no image).
    `cache`: kfp.local's task cache under `root`/.kfp_cache, keyed like the backend's (inputs incl.
    artifact URIs, image, command). `arguments`: pipeline parameters (e.g. teacher_uri=...).
    Returns the run's directory: one subdirectory per task, holding its output artifacts."""
    from kfp import local

    # SubprocessRunner warns for every task whose image name lacks "python"; here the image is this env
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".gitignore").exists():
        (root / ".gitignore").write_text("*\n")  # run outputs, never committed
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               workspace_root=tempfile.mkdtemp(prefix="kdflow-ws-"), raise_on_error=True,
               enable_caching=cache)
    before = set(root.glob(f"{NAME}-*"))
    build(raw_params)(**arguments)
    (run_dir,) = set(root.glob(f"{NAME}-*")) - before
    return run_dir


def submit(raw_params: dict, host: str, experiment: str, run_name: str | None = None, image: str | None = None,
           namespace: str | None = None, arguments: dict | None = None, wait: float | None = None,
           poll: float = 10, log=print) -> dict:
    """Upload the compiled pipeline (a new version when it exists) and start a run in `experiment`.
    `namespace`: the profile namespace of a multi-user KFP (pipeline, experiment and run go there; a
    multi-user server without one is refused here, as the server would refuse a shared pipeline).
    `wait`: follow the run for up to this many seconds; the result then has its final `state` and
    `failed_tasks`."""
    from kdflow.kfp import runs

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        package = str(compile_pipeline(raw_params, Path(tmp) / "pipeline.yaml", image))  # params errors first
        try:
            client = runs.client(host, namespace)
            out = _upload_and_run(client, package, experiment, run_name or f"{NAME}-{stamp}", stamp, namespace,
                                  arguments or {})
            out["url"] = f"{host.rstrip('/')}/#/runs/details/{out['run_id']}"
            if wait is not None:
                log(json.dumps(out, indent=2))
                out |= runs.wait(client, out["run_id"], wait, poll, log)
            return out
        except Exception as exc:  # urllib3 / kfp_server_api errors: say which server and why, not a traceback
            raise KdflowError(f"KFP server {host}: {runs.reason(exc)}") from None


def _upload_and_run(client, package: str, experiment: str, run_name: str, stamp: str, namespace: str | None,
                    arguments: dict) -> dict:
    # healthz is public on every KFP; kfp.Client.get_kfp_healthz retries five times and logs tracebacks
    if client._healthz_api.healthz_service_get_healthz().multi_user and not namespace:
        raise KdflowError("this KFP is multi-user: pass --namespace <your profile namespace> (pipelines, "
                          "experiments and runs are created there)")
    found = client.list_pipelines(filter=json.dumps({"predicates": [
        {"operation": "EQUALS", "key": "display_name", "stringValue": NAME}]}), namespace=namespace).pipelines or []
    if not found:  # the first upload creates the pipeline (in the namespace) with this package as its version
        pipeline_id = client.upload_pipeline(package, pipeline_name=NAME, namespace=namespace).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
        version_id = versions.pipeline_versions[0].pipeline_version_id
    else:
        pipeline_id = found[0].pipeline_id
        version_id = client.upload_pipeline_version(package, f"{NAME}-{stamp}",
                                                    pipeline_id=pipeline_id).pipeline_version_id
    exp = client.create_experiment(experiment, namespace=namespace)
    run = client.run_pipeline(experiment_id=exp.experiment_id, job_name=run_name, pipeline_id=pipeline_id,
                              version_id=version_id, params=arguments)
    return {"run_id": run.run_id, "experiment_id": exp.experiment_id, "pipeline_id": pipeline_id,
            "version_id": version_id, "namespace": namespace or ""}
