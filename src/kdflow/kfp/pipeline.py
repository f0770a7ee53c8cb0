"""The KD pipeline: resolve params → data version → prepare (or import a prepared dataset) → teacher
candidates (or import a teacher) → sharded soft targets → merge → baseline ∥ distill sweep → select
best → finetune → evaluate → gate → register, under an exit handler that records the run's final
state in MLflow.

`build(raw_params, image)` makes the pipeline from a params dict. The `kubeflow` section sets
compile-time cluster settings (resources, placement, Secrets, PVCs, workspace, shards, fan-out
parallelism, training job); the rest becomes `params_yaml`, and the keys people change per run are
typed pipeline parameters (`kdflow.kfp.params.TYPED`) that `resolve_params` applies on top.

Caching: every step but data_version, register and the exit handler is cached. `prepare` is keyed on
the data version key, so an unchanged re-run reuses the dataset artifact and, through its id, every
downstream step; an imported dataset or teacher (`data_uri`, `teacher_uri`) keeps one artifact
per URI (`reimport=False`).

No `from __future__ import annotations` here: KFP reads the sub-pipelines' annotations as types.
"""

import yaml
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model

from kdflow.kfp import image as kdflow_image
from kdflow.kfp.components import load
from kdflow.kfp.params import split, typed_defaults
from kdflow.kfp.schema import Kubeflow
from kdflow.kfp.tasks import configure

NAME = "kdflow-distillation"
UNCACHED = frozenset({"data_version", "register", "record_status"})  # see the module docstring


def build(raw_params: dict, image: str | None = None):
    """The pipeline function for these params (validated here, so a bad key fails at compile time)."""
    params_default, kf = split(raw_params)
    image = image or kdflow_image.reference()
    typed = typed_defaults(params_default)
    # one line: the compiler copies parameter defaults into the YAML's header comment, and a multi-line
    # default would end the comment and break the file
    params_yaml_default = yaml.safe_dump(params_default, sort_keys=False, default_flow_style=True,
                                         width=float("inf")).strip()
    ws = kf.workspace
    config = dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(
        size=ws.size, kubernetes=dsl.KubernetesWorkspaceConfig(pvcSpecPatch=ws.pvc_spec_patch()))) if ws.size else None
    scratch = dsl.WORKSPACE_PATH_PLACEHOLDER if ws.size else ""

    def step(name: str, stage: str | None = None, **inputs):
        task = load(name)(**inputs)
        return configure(task, stage or name, kf, image, cache=name not in UNCACHED)

    teacher_candidates, shard_soft_targets, distill_sweep = _fan_outs(step, kf, image)
    imports = [name for name in ("teacher_uri", "data_uri") if getattr(kf, name)]

    @dsl.pipeline(name=NAME, description="Knowledge distillation with kdflow stages", pipeline_config=config)
    def distillation_pipeline(params_yaml: str = params_yaml_default, data_rev: str = str(typed["data_rev"]),
                              teacher_epochs: int = typed["teacher_epochs"],
                              distill_epochs: int = typed["distill_epochs"],
                              temperature: float = typed["temperature"], alpha: float = typed["alpha"],
                              teacher_uri: str = kf.teacher_uri or "", data_uri: str = kf.data_uri or "",
                              teachers: list = kf.teachers or [{}], sweep: list = kf.sweep or [{}]):
        exit_task = step("record_status", params_yaml=params_yaml, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        with dsl.ExitHandler(exit_task, name="kdflow"):
            params = step("resolve_params", params_yaml=params_yaml, data_rev=data_rev, teacher_epochs=teacher_epochs,
                          distill_epochs=distill_epochs, temperature=temperature, alpha=alpha,
                          teacher_uri=teacher_uri, data_uri=data_uri, imports=imports).outputs["params"]
            if kf.data_uri:  # an existing prepared dataset, one artifact per URI
                data = dsl.importer(artifact_uri=data_uri, artifact_class=Dataset, reimport=False,
                                    download_to_workspace=bool(ws.size)).output
            else:
                key = step("data_version", params=params).output
                data = step("prepare", params=params, data_key=key, scratch=scratch).outputs["data"]
            if kf.teacher_uri:  # an existing teacher (a kdflow model directory), one artifact per URI
                teacher = dsl.importer(artifact_uri=teacher_uri, artifact_class=Model, reimport=False,
                                       download_to_workspace=bool(ws.size)).output
            else:
                teacher = teacher_candidates(params=params, teachers=teachers, data=data).output
            store = shard_soft_targets(params=params, data=data, teacher=teacher,
                                       num_shards=kf.soft_target_shards).output
            baseline = step("train_baseline", params=params, data=data)
            student = distill_sweep(params=params, sweep=sweep, data=data, soft_targets=store, teacher=teacher).output
            final = step("finetune", params=params, data=data, student=student)
            ev = step("evaluate", params=params, data=data, teacher=teacher, baseline=baseline.outputs["model"],
                      student=final.outputs["model"])
            g = step("gate", params=params, metrics=ev.outputs["metrics"])
            with dsl.If(g.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 (a KFP condition, not a bool)
                step("register", params=params, data=data, student=final.outputs["model"], teacher=teacher,
                     metrics=ev.outputs["metrics"])

    return distillation_pipeline


def _fan_outs(step, kf: Kubeflow, image: str):
    """The three ParallelFor fan-outs as sub-pipelines (one box each in the UI), each limited to
    `kubeflow.max_parallel` iterations at once."""
    limit = kf.max_parallel

    @dsl.pipeline(name="teacher-candidates")
    def teacher_candidates(params: Input[Artifact], teachers: list, data: Input[Dataset]) -> Model:
        with dsl.ParallelFor(teachers, parallelism=limit, name="teachers") as overrides:
            if kf.training_job.enabled:
                t = step("launch_training_job", params=params, overrides=overrides, settings=kf.model_dump_json(),
                         image=image, data=data, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            else:
                t = step("train_teacher", params=params, overrides=overrides, data=data)
        return step("select_best", "select_teacher", params=params,
                    candidates=dsl.Collected(t.outputs["model"])).outputs["best"]

    # num_shards is an input, not a constant in the loop: kfp.local 2.17 loses a sub-pipeline's artifact
    # inputs inside a ParallelFor over a raw list unless the loop also reads one of its parameters
    @dsl.pipeline(name="soft-target-shards")
    def shard_soft_targets(params: Input[Artifact], data: Input[Dataset], teacher: Input[Model],
                           num_shards: int) -> Dataset:
        with dsl.ParallelFor(list(range(kf.soft_target_shards)), parallelism=limit, name="shards") as shard:
            st = step("soft_targets", params=params, data=data, teacher=teacher, shard_index=shard,
                      num_shards=num_shards)
        return step("merge_soft_targets", params=params,
                    shards=dsl.Collected(st.outputs["store"])).outputs["store"]

    @dsl.pipeline(name="distill-sweep")
    def distill_sweep(params: Input[Artifact], sweep: list, data: Input[Dataset], soft_targets: Input[Dataset],
                      teacher: Input[Model]) -> Model:
        with dsl.ParallelFor(sweep, parallelism=limit, name="trials") as trial:
            d = step("distill", params=params, trial=trial, data=data, soft_targets=soft_targets, teacher=teacher)
        return step("select_best", params=params, candidates=dsl.Collected(d.outputs["model"])).outputs["best"]

    return teacher_candidates, shard_soft_targets, distill_sweep
