"""`kdflow <stage> ...`: maps command-line paths to `kdflow.stages.<stage>.run`. No stage logic here."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

for _k, _v in (("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "true"), ("DVC_NO_ANALYTICS", "1")):
    os.environ.setdefault(_k, _v)

# stage -> (help, input flags, output flags); flag names map to the stage's `inputs`/`outputs` keys
STAGES: dict[str, tuple[str, list[str], list[str]]] = {
    "prepare": ("load a data source, split it, write dataset/", [], ["data"]),
    "train-teacher": ("train the teacher", ["data"], ["model", "checkpoints"]),
    "soft-targets": ("cache the teacher's logits", ["data", "teacher"], ["soft_targets"]),
    "train-baseline": ("train the student on hard labels only (no-KD baseline)", ["data"], ["model", "checkpoints"]),
    "distill": ("distill the student from the teacher", ["data", "soft_targets", "teacher"], ["model", "checkpoints"]),
    "finetune": ("optional hard-label fine-tuning of the student", ["data", "student"], ["model", "checkpoints"]),
    "evaluate": ("teacher vs baseline vs student on the test split", ["data", "teacher", "baseline", "student"],
                 ["metrics"]),
    "register": ("register the student in MLflow; promote it if the gate passes",
                 ["data", "student", "teacher", "metrics"], ["registration"]),
}
OUT_FLAG = {"model": "out", "soft_targets": "out", "metrics": "out", "registration": "out", "data": "out",
            "checkpoints": "ckpt-dir"}
EXTERNAL = {  # subcommands whose parsing lives with their feature
    "serve": ("kdflow.serving.app", "run the model server"),
    "monitor": ("kdflow.monitoring.controller", "run the rollback controller"),
    "pipeline": ("kdflow.kfp_cli", "compile / run-local / submit the Kubeflow pipeline"),
    "sweep": ("kdflow.sweep", "search temperature/alpha on cached soft targets"),
    "show": ("kdflow.evaluation.summary", "print the evaluation table of a metrics dir"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdflow", description="Knowledge distillation stages for DVC and Kubeflow.")
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")
    for name, (help_, ins, outs) in STAGES.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        sp.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param, e.g. -S distill.temperature=8")
        for k in ins:
            sp.add_argument(f"--{k.replace('_', '-')}", type=Path, required=k != "teacher" or name != "distill")
        for k in outs:
            flag = OUT_FLAG[k]
            sp.add_argument(f"--{flag}", dest=f"out_{k}", type=Path, required=k != "checkpoints")
        if name == "soft-targets":
            sp.add_argument("--shard-index", type=int, default=0)
            sp.add_argument("--num-shards", type=int, default=1)
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
    from kdflow.config import load_params

    name = args.command
    _, ins, outs = STAGES[name]

    def work() -> dict:
        cfg = load_params(args.params, args.set)
        inputs = {k: getattr(args, k) for k in ins if getattr(args, k, None) is not None}
        outputs = {k: getattr(args, f"out_{k}") for k in outs if getattr(args, f"out_{k}") is not None}
        stage = importlib.import_module(f"kdflow.stages.{name.replace('-', '_')}")
        extra = {"shard_index": args.shard_index, "num_shards": args.num_shards} if name == "soft-targets" else {}
        return stage.run(cfg, inputs, outputs, **extra)

    return report(f"kdflow {name}", work)


if __name__ == "__main__":
    sys.exit(main())
