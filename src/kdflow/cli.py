"""`kdflow <stage> ...`: one subcommand per entry of the stage registry, mapping flags to paths.

No stage logic here: flags come from the declared ports and options, the call is
`registry.run_stage(name, cfg, inputs, outputs, **options)`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from kdflow.stages.registry import STAGES, Stage

for _k, _v in (("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "true"), ("DVC_NO_ANALYTICS", "1")):
    os.environ.setdefault(_k, _v)

EXTERNAL = {  # subcommands whose parsing lives with their feature
    "serve": ("kdflow.serving.app", "run the model server"),
    "monitor": ("kdflow.monitoring.controller", "run the rollback controller"),
    "pipeline": ("kdflow.kfp.cli", "compile / run-local / submit the Kubeflow pipeline"),
    "show": ("kdflow.evaluation.show", "print the evaluation table of a metrics dir"),
    "dvc-yaml": ("kdflow.stages.dvc_yaml", "write dvc.yaml from the stage registry (--check: verify it)"),
}


def _add_stage(sub, stage: Stage) -> None:
    sp = sub.add_parser(stage.command, help=stage.help, description=stage.help)
    sp.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sp.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a param, e.g. -S distill.temperature=8")
    for port in stage.inputs:
        sp.add_argument(f"--{port.cli_flag}", dest=f"in_{port.name}", type=Path, required=port.required,
                        help=port.help or f"input {port.kind}")
    for port in stage.outputs:
        sp.add_argument(f"--{port.cli_flag}", dest=f"out_{port.name}", type=Path, required=port.required,
                        help=port.help or f"output {port.kind}")
    for opt in stage.options:
        sp.add_argument(f"--{opt.name.replace('_', '-')}", type=opt.type, default=opt.default, help=opt.help)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdflow", description="Knowledge distillation stages for DVC and Kubeflow.")
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")
    for stage in STAGES:
        _add_stage(sub, stage)
    for name, (_, help_) in EXTERNAL.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def report(prog: str, work) -> int:
    """Run `work()`; print its summary as JSON (exit 0) or a KdflowError as one line on stderr (exit 2)."""
    from kdflow.errors import KdflowError

    try:
        summary = work()
    except KdflowError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if summary.get("rank") != "non-zero":  # under DDP only rank 0 reports
        print(json.dumps(summary, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTERNAL:
        return importlib.import_module(EXTERNAL[argv[0]][0]).main(argv[1:])
    args = _parser().parse_args(argv)
    stage = next(s for s in STAGES if s.command == args.command)

    def work() -> dict:
        from kdflow.config import load_params
        from kdflow.stages.registry import run_stage

        cfg = load_params(args.params, args.set)
        inputs = {p.name: v for p in stage.inputs if (v := getattr(args, f"in_{p.name}")) is not None}
        outputs = {p.name: v for p in stage.outputs if (v := getattr(args, f"out_{p.name}")) is not None}
        options = {o.name: getattr(args, o.name) for o in stage.options}
        return run_stage(stage.name, cfg, inputs, outputs, **options)

    return report(f"kdflow {stage.command}", work)


if __name__ == "__main__":
    sys.exit(main())
