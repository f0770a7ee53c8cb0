"""`kdflow pipeline compile | run-local | submit | render-job | image`: the Kubeflow entry points.

Parsing only; the pipeline lives in pipelines/, cluster settings in kdflow.cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from kdflow.errors import KdflowError

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _import_pipelines() -> None:
    """components/ and pipelines/ sit at the repo's top level (beside src/), not in the wheel."""
    for root in (Path.cwd(), SOURCE_ROOT):
        if (root / "pipelines" / "distillation.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            return
    raise KdflowError("pipelines/ not found: run `kdflow pipeline` from the kdflow repository")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdflow pipeline", description="Compile, run or submit the KFP pipeline.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="<command>")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    common.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param, e.g. -S kubeflow.soft_target_shards=4")
    image = argparse.ArgumentParser(add_help=False)
    image.add_argument("--image", default=None, help="component image (default: `kdflow pipeline image`)")

    c = sub.add_parser("compile", parents=[common, image], help="compile the pipeline to IR YAML")
    c.add_argument("-o", "--output", default="pipeline.yaml")
    r = sub.add_parser("run-local", parents=[common], help="run the whole pipeline with kfp.local here")
    r.add_argument("--root", default="kfp_local", help="kfp.local pipeline root (task outputs)")
    s = sub.add_parser("submit", parents=[common, image], help="upload the pipeline and start a run")
    s.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    s.add_argument("--experiment", default=None, help="default: kubeflow.experiment or register.experiment")
    s.add_argument("--run-name", default=None)
    s.add_argument("--namespace", default=None, help="KFP namespace (multi-user installs)")
    j = sub.add_parser("render-job", parents=[common, image], help="print the teacher training job manifest")
    j.add_argument("--kind", choices=["TrainJob", "PyTorchJob"], default=None)
    j.add_argument("--name", default="kdflow-teacher")
    j.add_argument("--namespace", default="kubeflow")
    sub.add_parser("image", help="print the default component image")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        _import_pipelines()
        from components.image import IMAGE

        if args.cmd == "image":
            print(IMAGE)
            return 0
        from kdflow.cluster import load_raw, split

        raw = load_raw(args.params, args.set)
        img = getattr(args, "image", None) or IMAGE
        if args.cmd == "compile":
            from pipelines.entrypoints import compile_pipeline

            print(compile_pipeline(raw, args.output, img))
        elif args.cmd == "run-local":
            from pipelines.entrypoints import run_local

            print(run_local(raw, args.root))
        elif args.cmd == "submit":
            from pipelines.entrypoints import submit

            params, kf = split(raw)
            exp = args.experiment or kf.experiment or params.get("register", {}).get("experiment", "kdflow")
            print(json.dumps(submit(raw, args.host, exp, args.run_name, img, args.namespace), indent=2))
        elif args.cmd == "render-job":
            from kdflow.cluster.training_job import render

            _, kf = split(raw)
            if args.kind:
                kf.training_job.kind = args.kind
            if not kf.data_cache.pvc:
                raise KdflowError("render-job needs kubeflow.data_cache.pvc (the job's shared volume)")
            print(yaml.safe_dump(render(kf, img, args.name, args.namespace), sort_keys=False), end="")
    except KdflowError as exc:
        print(f"kdflow pipeline {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
