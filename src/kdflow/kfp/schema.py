"""Schema of the `kubeflow:` params section: where and how the pipeline runs on a cluster.

Nothing here changes what a stage computes; it sets pod resources and placement, storage,
Secrets-backed environment, the fan-out of the pipeline (teacher candidates, soft-target
shards, distillation sweep) and the multi-node training job.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kdflow.kfp import backend


class Strict(BaseModel):
    """kdflow.config.Strict, restated: kdflow.config will hold `kubeflow: Kubeflow` and imports this
    module, so this module must not import kdflow.config."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

StageName = Literal["resolve_params", "data_version", "prepare", "train_teacher", "launch_training_job",
                    "select_teacher", "soft_targets", "merge_soft_targets", "train_baseline", "distill", "select_best",
                    "finetune", "evaluate", "gate", "register", "record_status"]

_CPU = re.compile(r"^([0-9]*[.])?[0-9]+m?$")
_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
# env names that carry credentials (or URIs that may embed them): only ever from Secrets
_SECRET_ENV = re.compile(r"(^MLFLOW_TRACKING_URI$|^AWS_|PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY$)", re.I)


class Resources(Strict):
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    accelerator_type: str | None = Field(None, description="e.g. nvidia.com/gpu")
    accelerator_count: int = Field(0, ge=0)

    @field_validator("cpu_request", "cpu_limit")
    @classmethod
    def _cpu(cls, v: str | None) -> str | None:
        if v is not None and not _CPU.match(v):
            raise ValueError("CPU must be a number or millicores like '500m'")
        return v

    @field_validator("memory_request", "memory_limit")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None and not _MEMORY.match(v):
            raise ValueError("memory must be an integer with an optional unit like '4Gi'")
        return v

    @model_validator(mode="after")
    def _accelerator(self) -> Resources:
        if self.accelerator_count and not self.accelerator_type:
            raise ValueError("accelerator_count needs accelerator_type (e.g. nvidia.com/gpu)")
        return self


class Toleration(Strict):
    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Placement(Strict):
    resources: Resources = Resources()
    node_selector: dict[str, str] = {}
    tolerations: list[Toleration] = []


class DefaultResources(Resources):
    """Requests/limits of every step unless its stage says otherwise (set keys replace these one by one)."""

    cpu_request: str | None = "1"
    memory_request: str | None = "2Gi"
    memory_limit: str | None = "8Gi"


class DefaultPlacement(Placement):
    resources: DefaultResources = DefaultResources()


class SecretEnv(Strict):
    secret: str = Field(description="Kubernetes Secret name")
    env: dict[str, str] = Field(description="Secret data key -> environment variable")
    optional: bool = False


QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|K|M|G|T|P|E)?$"


class Workspace(Strict):
    """The KFP workspace (backend >= 2.15): one PVC per run, mounted by the steps that use it. The backend
    refuses a workspace whose PVC spec lacks accessModes; it takes storageClassName from here or from
    its own default (`kfp-launcher` ConfigMap `defaultWorkspace`)."""

    size: str | None = Field(None, pattern=QUANTITY, description="e.g. 20Gi; null = no workspace")
    storage_class: str | None = Field(None, description="StorageClass of the workspace PVC (default: the "
                                      "backend's defaultWorkspace, else the cluster default)")
    access_modes: list[Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]] = ["ReadWriteOnce"]

    def pvc_spec_patch(self) -> dict:
        patch: dict = {"accessModes": list(self.access_modes)}
        if self.storage_class:
            patch["storageClassName"] = self.storage_class
        return patch


class DataCache(Strict):
    pvc: str | None = Field(None, description="existing PVC; ReadWriteMany when a multi-node job shares it")
    mount_path: str = "/mnt/kdflow"
    stages: list[StageName] = ["prepare", "launch_training_job"]


class TrainingJob(Strict):
    """Train the teacher as a multi-node job (Kubeflow Trainer TrainJob, or Training Operator v1 PyTorchJob)."""

    enabled: bool = False
    kind: Literal["TrainJob", "PyTorchJob"] = "TrainJob"
    trainer_version: Literal["v2.0", "v2.1", "v2.2", "v2.3"] = Field(
        "v2.3", description="Kubeflow Trainer release of the cluster: the TrainJob's pod override field is "
        "podSpecOverrides (v2.0), podTemplateOverrides (v2.1), runtimePatches (v2.2, v2.3)")
    runtime: str = Field("torch-distributed", description="TrainJob: ClusterTrainingRuntime name")
    num_nodes: int = Field(2, ge=1)
    procs_per_node: int = Field(1, ge=1, description="torchrun processes per node = Lightning devices")
    namespace: str | None = Field(None, description="default: the namespace of the pipeline pod")
    service_account: str | None = None
    timeout_seconds: int = Field(86400, ge=60)
    poll_seconds: int = Field(15, ge=1)
    backoff_limit: int = Field(3, ge=0, description="PyTorchJob: pod restarts (restartPolicy OnFailure) before "
                               "the job fails; each resumes from the checkpoints on the PVC")
    ttl_seconds: int = Field(3600, ge=0, description="PyTorchJob: delete the finished job after this long "
                             "(the launcher deletes it sooner; this covers a launcher that died)")


class Kubeflow(Strict):
    kfp_backend: Literal[backend.VERSIONS] = Field(  # type: ignore[valid-type]
        backend.DEFAULT, description="KFP backend release of the cluster (major.minor): fields an older "
        "API server refuses are left out (optional Secrets before 2.15, run_as_user before 2.16)")
    experiment: str | None = Field(None, description="KFP experiment of `kdflow pipeline submit` "
                                   "(default: register.experiment)")
    defaults: DefaultPlacement = DefaultPlacement()
    stages: dict[StageName, Placement] = Field({}, description="per-stage placement, merged over `defaults`")
    teachers: list[dict[str, Any]] = Field([], description="teacher candidates as dotted overrides "
                                           "(e.g. {seed: 1}); with 2+ the best on val is kept")
    soft_target_shards: int = Field(1, ge=1, le=256)
    sweep: list[dict[str, Any]] = Field([], description="distill trials, keys relative to `distill` "
                                        "(e.g. {temperature: 2, alpha: 0.5}); best val accuracy wins")
    teacher_uri: str | None = Field(None, description="import this teacher (a kdflow model directory's URI, "
                                    "e.g. s3://bucket/teacher) instead of training one; per-run parameter")
    data_uri: str | None = Field(None, description="import this prepared dataset (a kdflow dataset directory's "
                                 "URI) instead of running prepare; per-run parameter")
    max_parallel: int = Field(4, ge=1, description="at most this many iterations of each ParallelFor at once")
    workspace: Workspace = Workspace()
    data_cache: DataCache = DataCache()
    secrets: list[SecretEnv] = [
        SecretEnv(secret="kdflow-mlflow", env={"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}),
        SecretEnv(secret="kdflow-mlflow-auth", optional=True,
                  env={"MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
                       "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
                       "MLFLOW_TRACKING_TOKEN": "MLFLOW_TRACKING_TOKEN"}),
        SecretEnv(secret="kdflow-object-store", optional=True,
                  env={"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
                       "MLFLOW_S3_ENDPOINT_URL": "MLFLOW_S3_ENDPOINT_URL"}),
    ]
    env: dict[str, str] = Field({}, description="plain (non-secret) environment for every step")
    image_pull_secrets: list[str] = []
    run_as_user: int | None = Field(10001, description="pod securityContext runAsUser (the image's user)")
    fs_group: int | None = Field(10001, description="training job pods: securityContext fsGroup, so the "
                                 "image's user can write the shared PVC")
    retries: int = Field(0, ge=0, description="retries per step (preemptible nodes)")
    training_job: TrainingJob = TrainingJob()

    @field_validator("kfp_backend", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, float | int) else v  # `-S kubeflow.kfp_backend=2.15` reads as YAML

    @field_validator("env")
    @classmethod
    def _no_literal_secrets(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in v if _SECRET_ENV.search(k))
        if bad:
            raise ValueError(f"{bad} look like credentials: set them through `secrets` (Kubernetes Secrets)")
        return v

    @model_validator(mode="after")
    def _backend_has_the_fields(self) -> Kubeflow:
        target, need = self.kfp_backend, []
        if "run_as_user" in self.model_fields_set and self.run_as_user is not None \
                and not backend.supports(target, backend.SECURITY_CONTEXT):
            need.append(f"run_as_user needs kfp_backend >= {backend.SECURITY_CONTEXT} (the {target} API server "
                        "refuses a securityContext; the image runs as 10001 anyway: remove it)")
        if self.workspace.size and not backend.supports(target, backend.WORKSPACE_IMPORT):
            need.append(f"workspace needs kfp_backend >= {backend.WORKSPACE_IMPORT}")
        if need:
            raise ValueError("; ".join(need))
        return self

    def secrets_for_backend(self) -> list[SecretEnv]:
        """The Secrets the target backend can mount: before 2.15 a Secret cannot be optional, so optional
        ones are left out (set `optional: false` on the ones you create)."""
        if backend.supports(self.kfp_backend, backend.OPTIONAL_SECRET):
            return list(self.secrets)
        return [s for s in self.secrets if not s.optional]

    def security_context(self) -> bool:
        return self.run_as_user is not None and backend.supports(self.kfp_backend, backend.SECURITY_CONTEXT)

    @model_validator(mode="after")
    def _job_needs_shared_storage(self) -> Kubeflow:
        if self.training_job.enabled and not self.data_cache.pvc:
            raise ValueError("training_job.enabled needs data_cache.pvc: the job's pods and the launcher "
                             "exchange data and the model through it")
        return self

    def placement(self, stage: str) -> Placement:
        """`defaults` with the stage's own settings on top (resources field by field, node selector
        key by key; tolerations replace the defaults when the stage sets any)."""
        over = self.stages.get(stage)  # type: ignore[call-overload]
        base = Resources(**self.defaults.resources.model_dump())
        if over is None:
            return Placement(resources=base, node_selector=self.defaults.node_selector,
                             tolerations=self.defaults.tolerations)
        res = base.model_copy(update=over.resources.model_dump(exclude_unset=True))
        tolerations = over.tolerations if "tolerations" in over.model_fields_set else self.defaults.tolerations
        return Placement(resources=res, node_selector={**self.defaults.node_selector, **over.node_selector},
                         tolerations=tolerations)

    def secret_env_names(self) -> list[str]:
        return [env for s in self.secrets for env in s.env.values()]
