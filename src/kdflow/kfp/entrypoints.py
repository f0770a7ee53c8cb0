"""Compile, run locally (kfp.local), or submit the pipeline to a KFP server. `kdflow pipeline` calls these."""

from __future__ import annotations

import datetime as dt
import os
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
           namespace: str | None = None, arguments: dict | None = None) -> dict[str, str]:
    """Upload the compiled pipeline (a new version when it exists) and start a run in `experiment`."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        package = str(compile_pipeline(raw_params, Path(tmp) / "pipeline.yaml", image))  # params errors first
        try:
            return _upload_and_run(package, host, experiment, run_name or f"{NAME}-{stamp}", stamp, namespace,
                                   arguments or {})
        except Exception as exc:  # urllib3 / kfp_server_api errors: say which server and why, not a traceback
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise KdflowError(f"KFP server {host}: {reason}") from None


def _upload_and_run(package: str, host: str, experiment: str, run_name: str, stamp: str,
                    namespace: str | None, arguments: dict) -> dict[str, str]:
    import kfp

    # credentials: KFP_TOKEN (e.g. `kubectl create token`, docs/kubeflow.md "API access") as a bearer
    # token, else kfp.Client's own discovery (in-cluster service account token)
    client = kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=os.environ.get("KFP_TOKEN"))
    pipeline_id = client.get_pipeline_id(NAME)
    if pipeline_id is None:  # the first upload creates the pipeline with this package as its version
        pipeline_id = client.upload_pipeline(package, pipeline_name=NAME).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
        version_id = versions.pipeline_versions[0].pipeline_version_id
    else:
        version_id = client.upload_pipeline_version(package, f"{NAME}-{stamp}",
                                                    pipeline_id=pipeline_id).pipeline_version_id
    exp = client.create_experiment(experiment, namespace=namespace)
    run = client.run_pipeline(experiment_id=exp.experiment_id, job_name=run_name, pipeline_id=pipeline_id,
                              version_id=version_id, params=arguments)
    return {"run_id": run.run_id, "experiment_id": exp.experiment_id, "pipeline_id": pipeline_id,
            "version_id": version_id, "url": f"{host.rstrip('/')}/#/runs/details/{run.run_id}"}
