"""`kdflow pipeline compile | run-local | submit | render-job | image | components`: the Kubeflow entry
points. Parsing only; everything they call lives in kdflow.kfp and works from an installed kdflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml

from kdflow.errors import KdflowError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdflow pipeline", description="Compile, run or submit the KFP pipeline.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="<command>")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    common.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param, e.g. -S kubeflow.soft_target_shards=4")
    image = argparse.ArgumentParser(add_help=False)
    image.add_argument("--image", default=None, help="component image (default: `kdflow pipeline image`)")
    run_args = argparse.ArgumentParser(add_help=False)
    run_args.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                          help="a pipeline parameter of this run, e.g. --arg temperature=2 --arg data_rev=v2 "
                               "--arg teacher_uri=s3://bucket/teacher (YAML values)")

    c = sub.add_parser("compile", parents=[common, image], help="compile the pipeline to IR YAML")
    c.add_argument("-o", "--output", default="pipeline.yaml")
    r = sub.add_parser("run-local", parents=[common, run_args], help="run the whole pipeline with kfp.local here")
    r.add_argument("--root", default="kfp_local", help="kfp.local pipeline root (task outputs)")
    r.add_argument("--cache", action="store_true", help="kfp.local task cache (under --root/.kfp_cache)")
    s = sub.add_parser("submit", parents=[common, image, run_args], help="upload the pipeline and start a run")
    s.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080 (token: $KFP_TOKEN)")
    s.add_argument("--experiment", default=None, help="default: kubeflow.experiment or register.experiment")
    s.add_argument("--run-name", default=None)
    s.add_argument("--namespace", default=None, help="multi-user KFP: your profile namespace (the pipeline, "
                   "experiment and run are created there); standalone: leave out")
    s.add_argument("--wait", action="store_true", help="follow the run to its final state; exit 1 naming the "
                   "failed task unless it succeeds")
    s.add_argument("--timeout", type=float, default=86400, help="--wait: give up after this many seconds (exit 2)")
    s.add_argument("--poll", type=float, default=10, help="--wait: seconds between status reads")
    j = sub.add_parser("render-job", parents=[common, image], help="print the teacher training job manifest")
    j.add_argument("--kind", choices=["TrainJob", "PyTorchJob"], default=None)
    j.add_argument("--trainer-version", choices=["v2.0", "v2.1", "v2.2", "v2.3"], default=None)
    j.add_argument("--name", default="kdflow-teacher")
    j.add_argument("--namespace", default="kubeflow")
    i = sub.add_parser("image", help="print the image reference (manifests/image), or record a pushed one")
    i.add_argument("--set", dest="ref", default=None, metavar="REPO:TAG[@sha256:...]",
                   help="write this reference into manifests/image/kustomization.yaml")
    k = sub.add_parser("components", help="check (or --write) each component's compiled YAML and README")
    k.add_argument("--write", action="store_true", help="regenerate instead of checking")
    return p


def _arguments(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise KdflowError(f"--arg {pair!r}: expected NAME=VALUE")
        out[name] = yaml.safe_load(value) if value else ""
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.cmd == "image":
            from kdflow.kfp import image

            print(image.record(args.ref) if args.ref else image.reference())
            return 0
        if args.cmd == "components":
            from kdflow.kfp import validate

            problems = validate.write() if args.write else validate.check()
            for line in problems:
                print(line)
            return 1 if problems and not args.write else 0
        from kdflow.config import load_raw
        from kdflow.kfp.params import split

        raw = load_raw(args.params, args.set)
        if args.cmd == "compile":
            from kdflow.kfp.entrypoints import compile_pipeline

            print(compile_pipeline(raw, args.output, args.image))
        elif args.cmd == "run-local":
            from kdflow.kfp.entrypoints import run_local

            print(run_local(raw, args.root, cache=args.cache, **_arguments(args.arg)))
        elif args.cmd == "submit":
            from kdflow.kfp.entrypoints import submit

            params, kf = split(raw)
            exp = args.experiment or kf.experiment or params.get("register", {}).get("experiment", "kdflow")
            out = submit(raw, args.host, exp, args.run_name, args.image, args.namespace, _arguments(args.arg),
                         wait=args.timeout if args.wait else None, poll=args.poll)
            print(json.dumps(out, indent=2))
            if args.wait and out["state"] != "SUCCEEDED":
                from kdflow.kfp.runs import describe

                detail = describe(out["failed_tasks"]) or out.get("error") or "no task reported a failure"
                print(f"kdflow pipeline submit: run {out['run_id']} {out['state']}: {detail}", file=sys.stderr)
                return 1
        elif args.cmd == "render-job":
            from kdflow.kfp import image
            from kdflow.kfp.training_job import render

            _, kf = split(raw)
            if args.kind:
                kf.training_job.kind = args.kind
            if args.trainer_version:
                kf.training_job.trainer_version = args.trainer_version
            if not kf.data_cache.pvc:
                raise KdflowError("render-job needs kubeflow.data_cache.pvc (the job's shared volume)")
            print(yaml.safe_dump(render(kf, args.image or image.reference(), args.name, args.namespace),
                                 sort_keys=False), end="")
    except KdflowError as exc:
        print(f"kdflow pipeline {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
