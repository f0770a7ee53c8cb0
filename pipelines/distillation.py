"""The KD pipeline: prepare → teacher candidates → sharded soft targets → merge → baseline ∥ distill
sweep → select best → finetune → evaluate → gate → register, under an exit handler that records
the run's final state in MLflow.

`build(raw_params, image)` makes the pipeline from a params dict: the `kubeflow` section sets
compile-time cluster settings (resources, placement, Secrets, PVC, shards, training job), the rest
becomes the default of the `params` parameter. `teachers` and `sweep` are run-time lists of
overrides; one element each (`[{}]`) is the plain configured run.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components.distill import distill
from components.evaluate import evaluate
from components.finetune import finetune
from components.image import IMAGE
from components.launch_training_job import launch_training_job
from components.merge_soft_targets import merge_soft_targets
from components.prepare import prepare
from components.record_status import record_status
from components.register import gate, register
from components.select_best import select_best
from components.soft_targets import soft_targets
from components.train_baseline import train_baseline
from components.train_teacher import train_teacher
from kdflow.cluster import split
from kdflow.cluster.schema import Kubeflow
from kdflow.cluster.tasks import configure

NAME = "kdflow-distillation"


def build(raw_params: dict, image: str = IMAGE):
    """The pipeline function for these params (validated here, so a bad key fails at compile time)."""
    params_default, kf = split(raw_params)

    def step(task, stage: str, cache: bool = True):
        return configure(task, stage, kf, image, cache)

    workspace = dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(size=kf.workspace_size)) \
        if kf.workspace_size else None
    teacher_candidates, shard_soft_targets, distill_sweep = _fan_outs(step, kf, image)

    @dsl.pipeline(name=NAME, description="Knowledge distillation with kdflow stages", pipeline_config=workspace)
    def distillation_pipeline(params: dict = params_default, teachers: list = kf.teachers or [{}],
                              sweep: list = kf.sweep or [{}]):
        exit_task = step(record_status(params=params), "record_status", cache=False)
        with dsl.ExitHandler(exit_task, name="kdflow"):
            # never cached: a moving git ref or a changed file behind a path is a new dataset under the
            # same params; the content hash it returns keys every downstream cache instead
            prep = step(prepare(params=params), "prepare", cache=False)
            data, data_hash = prep.outputs["data"], prep.outputs["Output"]
            teacher = teacher_candidates(params=params, teachers=teachers, data=data, data_hash=data_hash).output
            store = shard_soft_targets(params=params, data=data, data_hash=data_hash, teacher=teacher).output
            baseline = step(train_baseline(params=params, data=data, data_hash=data_hash), "train_baseline")
            student = distill_sweep(params=params, sweep=sweep, data=data, data_hash=data_hash,
                                    soft_targets=store, teacher=teacher).output
            final = step(finetune(params=params, data=data, data_hash=data_hash, student=student), "finetune")
            ev = step(evaluate(params=params, data=data, data_hash=data_hash, teacher=teacher,
                               baseline=baseline.outputs["model"], student=final.outputs["model"]), "evaluate")
            g = step(gate(params=params, metrics=ev.outputs["metrics"]), "gate")
            with dsl.If(g.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 (a KFP condition, not a bool)
                # a registry write is a side effect: never replay it from cache
                step(register(params=params, data=data, data_hash=data_hash, student=final.outputs["model"],
                              teacher=teacher, metrics=ev.outputs["metrics"]), "register", cache=False)

    return distillation_pipeline


def _fan_outs(step, kf: Kubeflow, image: str):
    """The three ParallelFor fan-outs as sub-pipelines. Besides grouping them in the UI, this hands
    `data_hash` into each loop as a pipeline input: kfp.local 2.17 replaces a loop's task-output
    parameters with the loop item, so a hash passed straight from `prepare` would arrive as {}."""

    @dsl.pipeline(name="teacher-candidates")
    def teacher_candidates(params: dict, teachers: list, data: Input[Dataset], data_hash: str) -> Model:
        with dsl.ParallelFor(teachers, name="teachers") as overrides:
            if kf.training_job.enabled:
                t = step(launch_training_job(params=params, overrides=overrides, settings=kf.model_dump_json(),
                                             image=image, data=data, data_hash=data_hash), "launch_training_job")
            else:
                t = step(train_teacher(params=params, overrides=overrides, data=data, data_hash=data_hash),
                         "train_teacher")
        return step(select_best(params=params, candidates=dsl.Collected(t.outputs["model"])),
                    "select_teacher").outputs["best"]

    @dsl.pipeline(name="soft-target-shards")
    def shard_soft_targets(params: dict, data: Input[Dataset], data_hash: str, teacher: Input[Model]) -> Dataset:
        n = kf.soft_target_shards
        with dsl.ParallelFor(list(range(n)), name="shards") as shard:
            st = step(soft_targets(params=params, data=data, data_hash=data_hash, teacher=teacher,
                                   shard_index=shard, num_shards=n), "soft_targets")
        return step(merge_soft_targets(params=params, shards=dsl.Collected(st.outputs["store"])),
                    "merge_soft_targets").outputs["store"]

    @dsl.pipeline(name="distill-sweep")
    def distill_sweep(params: dict, sweep: list, data: Input[Dataset], data_hash: str,
                      soft_targets: Input[Dataset], teacher: Input[Model]) -> Model:
        with dsl.ParallelFor(sweep, name="trials") as trial:
            d = step(distill(params=params, trial=trial, data=data, data_hash=data_hash,
                             soft_targets=soft_targets, teacher=teacher), "distill")
        return step(select_best(params=params, candidates=dsl.Collected(d.outputs["model"])),
                    "select_best").outputs["best"]

    return teacher_candidates, shard_soft_targets, distill_sweep
