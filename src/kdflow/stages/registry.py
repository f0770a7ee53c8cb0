"""Every stage, declared once.

A declaration names the stage's function, its typed inputs and outputs (with their default paths in
the DVC project), the params sections it reads and whether its result may be cached. The `kdflow` CLI
subcommands, `dvc.yaml` (`kdflow dvc-yaml`), the tests' pipeline order and the benchmarks' runner are
all derived from this table; adding a stage is one module with a `run(cfg, inputs, outputs)` plus one
`Stage(...)` below. Nothing here imports torch: the CLI parser and the KFP compiler read it cheaply.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from kdflow import tasks

# What an artifact is. DVC: `metrics` is a directory whose metrics.json is a DVC metric and whose plots/
# and report.html are uncached outputs; `checkpoints` persist across `dvc repro` (a killed run resumes).
KINDS = ("dataset", "model", "soft_targets", "metrics", "registration", "generations", "sweep", "checkpoints")


@dataclass(frozen=True)
class Port:
    name: str  # the key in the stage's `inputs` / `outputs` dict
    kind: str
    path: str | None = None  # default location in the DVC project (None: not in dvc.yaml)
    flag: str | None = None  # CLI flag without dashes; default: the name with dashes
    required: bool = True
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"port {self.name}: unknown kind {self.kind!r}; kinds: {KINDS}")

    @property
    def cli_flag(self) -> str:
        return self.flag or self.name.replace("_", "-")


@dataclass(frozen=True)
class Option:
    """An extra keyword argument of `run`, exposed as a CLI flag (e.g. a shard index)."""

    name: str
    type: type = int
    default: object = None
    help: str = ""


@dataclass(frozen=True)
class Stage:
    name: str  # snake_case; the CLI subcommand is the name with dashes
    func: str  # "module:function"
    help: str
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()
    params: tuple[str, ...] = ()  # params.yaml sections (dotted keys allowed) the stage reads
    cacheable: bool = True  # False: a side effect (a registry write) or a moving source
    pipeline: bool = True  # part of the default `dvc repro` pipeline (False: opt-in, e.g. methods/)
    options: tuple[Option, ...] = ()

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")

    @property
    def module(self) -> str:
        return self.func.partition(":")[0]

    def load(self) -> Callable[..., dict]:
        module, _, attr = self.func.partition(":")
        return getattr(importlib.import_module(module), attr)


def _model(name: str, path: str | None, flag: str | None = "out") -> Port:
    return Port(name, "model", path, flag=flag)


def _ckpt(path: str | None) -> Port:
    return Port("checkpoints", "checkpoints", path, flag="ckpt-dir", required=False,
                help="Lightning checkpoints a killed run resumes from")


DATA = Port("data", "dataset", "data/prepared", help="prepared dataset directory")
TEACHER = Port("teacher", "model", "models/teacher", help="teacher model directory")

STAGES: tuple[Stage, ...] = (
    Stage("prepare", "kdflow.stages.prepare:run", "load a data source, split it, write dataset/",
          outputs=(Port("data", "dataset", "data/prepared", flag="out"),), params=("data",),
          cacheable=False),  # a moving git ref or a changed file behind a path is new data under the same params
    Stage("train_teacher", "kdflow.stages.train_teacher:run", "train the teacher (or import teacher.source)",
          inputs=(DATA,), outputs=(_model("model", "models/teacher"), _ckpt("checkpoints/teacher")),
          params=("seed", "teacher")),
    Stage("soft_targets", "kdflow.stages.soft_targets:run", "cache the teacher's logits",
          inputs=(DATA, TEACHER), outputs=(Port("soft_targets", "soft_targets", "soft_targets/teacher", flag="out"),),
          params=("soft_targets",),
          options=(Option("shard_index", int, 0, "this process's shard"),
                   Option("num_shards", int, 1, "shards the samples are cut into"))),
    Stage("train_baseline", "kdflow.stages.train_baseline:run",
          "train the student on hard labels only (no-KD baseline)",
          inputs=(DATA,), outputs=(_model("model", "models/baseline"), _ckpt("checkpoints/baseline")),
          params=("seed", "student")),
    Stage("distill", "kdflow.stages.distill:run", "distill the student from the teacher",
          inputs=(DATA, Port("soft_targets", "soft_targets", "soft_targets/teacher"),
                  Port("teacher", "model", "models/teacher", required=False,
                       help="teacher model (online mode and feature terms)")),
          outputs=(_model("model", "models/student"), _ckpt("checkpoints/student")),
          params=("seed", "student.model", "soft_targets", "distill")),
    Stage("finetune", "kdflow.stages.finetune:run", "optional hard-label fine-tuning of the student",
          inputs=(DATA, Port("student", "model", "models/student")),
          outputs=(_model("model", "models/final"), _ckpt("checkpoints/final")), params=("seed", "finetune")),
    Stage("evaluate", "kdflow.stages.evaluate:run", "teacher vs baseline vs student on the test split",
          inputs=(DATA, TEACHER, Port("baseline", "model", "models/baseline"),
                  Port("student", "model", "models/final")),
          outputs=(Port("metrics", "metrics", "metrics", flag="out"),), params=("seed", "evaluate")),
    Stage("register", "kdflow.stages.register:run",
          "register the student in MLflow; promote it if the gate passes",
          inputs=(DATA, Port("student", "model", "models/final"), TEACHER,
                  Port("metrics", "metrics", "metrics")),
          outputs=(Port("registration", "registration", "registration", flag="out"),), params=("register",),
          cacheable=False),  # a registry write is a side effect: never replay it from a cache
    # Opt-in stages (methods/dvc.yaml, the Kubeflow fan-outs)
    Stage("born_again", "kdflow.stages.born_again:run", "born-again self-distillation over K generations",
          inputs=(DATA, Port("teacher", "model", "models/baseline", help="generation 0 (e.g. models/baseline)")),
          outputs=(Port("generations", "generations", "models/born_again", flag="out"),
                   _ckpt("checkpoints/born_again")),
          params=("seed", "distill", "born_again"), pipeline=False),
    Stage("teacher_pool_member", "kdflow.stages.combine_teachers:train_member",
          "train one ensemble.teachers member and cache its logits",
          inputs=(DATA,), outputs=(_model("model", None, flag="model"),
                                   Port("soft_targets", "soft_targets", None), _ckpt(None)),
          params=("teacher", "soft_targets"), pipeline=False,  # + the member's own entry (methods/dvc.yaml)
          options=(Option("member", str, None, "the ensemble.teachers name"),)),
    Stage("combine_teachers", "kdflow.stages.combine_teachers:combine",
          "stack several teachers' soft targets into one multi-teacher store",
          inputs=(DATA, Port("main", "soft_targets", "soft_targets/teacher", required=False,
                             help="the main teacher's store (first, when ensemble.include_main)"),
                  Port("pool", "soft_targets", "soft_targets/pool", required=False,
                       help="directory of member stores, one per ensemble.teachers name")),
          outputs=(Port("soft_targets", "soft_targets", "soft_targets/ensemble", flag="out"),),
          params=("ensemble.teachers", "ensemble.include_main", "soft_targets.shard_size"), pipeline=False),
    Stage("sweep", "kdflow.stages.sweep:run", "search temperature/alpha (and method weights) on cached soft targets; "
          "best on the validation split",
          inputs=(DATA, Port("soft_targets", "soft_targets", "soft_targets/teacher"),
                  Port("teacher", "model", "models/teacher", required=False,
                       help="teacher model dir (only feature terms run it)")),
          outputs=(Port("sweep", "sweep", "sweep", flag="out"),),
          params=("seed", "student.model", "soft_targets.mode", "distill", "sweep"), pipeline=False),
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
PIPELINE: tuple[str, ...] = tuple(s.name for s in STAGES if s.pipeline)


def get(name: str) -> Stage:
    key = name.replace("-", "_")
    if key not in BY_NAME:
        raise KeyError(f"unknown stage '{name}'; stages: {', '.join(BY_NAME)}")
    return BY_NAME[key]


def run_stage(name: str, cfg, inputs: dict, outputs: dict, **options) -> dict:
    """Call a stage by name, as the CLI, KFP components, tests and benchmarks do: the task's own function
    for this stage when `cfg.task` declares one (`kdflow.tasks`), the stage's shared body otherwise."""
    stage = get(name)
    own = tasks.get(cfg.task).stage(stage.name)
    return (own or stage.load())(cfg, inputs, outputs, **options)


def run_pipeline(cfg, root, stages: tuple[str, ...] = PIPELINE, reuse: dict[str, object] | None = None,
                 call: Callable[..., dict] | None = None) -> dict[str, dict]:
    """The pipeline in process, each stage at its declared paths under `root` (what `dvc repro` runs).

    `reuse` maps a declared path (e.g. "data/prepared") to an existing directory: stages read it from
    there, and a stage whose outputs are all reused is skipped. `call(name, cfg, inputs, outputs)`
    replaces `run_stage` (e.g. to time each stage). Returns each stage's summary by name.
    """
    from pathlib import Path

    where = {k: Path(v) for k, v in (reuse or {}).items()}
    locate = lambda port: where.get(port.path, Path(root) / port.path)  # noqa: E731
    summaries: dict[str, dict] = {}
    for name in stages:
        stage = get(name)
        made = [p for p in stage.outputs if p.path and p.kind != "checkpoints"]
        if made and all(p.path in where for p in made):
            continue
        inputs = {p.name: locate(p) for p in stage.inputs if p.path and (p.required or locate(p).exists())}
        outputs = {p.name: locate(p) for p in stage.outputs if p.path}
        summaries[name] = (call or run_stage)(name, cfg, inputs, outputs)
    return summaries
