"""The one typed schema of params.yaml.

DVC, the CLI, KFP components and tests all validate through `load_params`/`Params`,
so a wrong key fails the same way everywhere: one line naming the key path, the bad
value and what is allowed.

A leaf: names of losses, model sources and data sources come from the torch-free tables in
`kdflow.names`, so importing this module imports neither torch nor a loss or a model, and `dvc.yaml`'s
`prepare` does not rerun when a loss file changes. The `kubeflow:` section belongs to `kdflow.kfp`
(`kdflow.kfp.schema.Kubeflow` validates it when a pipeline compiles).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kdflow.errors import KdflowError
from kdflow.names.data_sources import describe
from kdflow.names.losses import COMBINER_NAMES, FEATURE_LOSS_NAMES, LOSS_NAMES
from kdflow.names.model_sources import MODEL_SOURCES, check_options, is_program
from kdflow.tasks.names import TASK_NAMES

# `register` is a section name; pydantic warns that it shadows ABCMeta.register, which we never call.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Augment(Strict):
    """Per-stage augmentation, off by default. 1-D ops apply to (C, L) signals, image ops to (C, H, W)."""

    enabled: bool = False
    # 1-D signals (generator-like, MNIST-1D style)
    shift: float = Field(0.0, ge=0, description="max fractional shift, in samples")
    stretch: float = Field(0.0, ge=0, lt=1, description="max relative time stretch")
    scale: float = Field(0.0, ge=0, lt=1, description="max relative amplitude change")
    ramp: float = Field(0.0, ge=0, description="max slope of an added linear ramp")
    smooth_noise: float = Field(0.0, ge=0, description="std of added low-pass noise")
    noise: float = Field(0.0, ge=0, description="std of added i.i.d. noise")
    # images
    crop_pad: int = Field(0, ge=0, description="pixels of random shift (pad + random crop)")
    flip: bool = False
    rotate: float = Field(0.0, ge=0, le=45, description="max rotation, degrees")


class Train(Strict):
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    scheduler: Literal["cosine", "onecycle", "none"] = "cosine"
    patience: int = Field(0, ge=0, description="early-stopping patience in epochs on val loss; 0 = off")
    augment: Augment = Augment()
    devices: int | Literal["auto"] = 1
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "64-true"] = "32-true"
    accelerator: Literal["cpu", "gpu", "auto"] = "cpu"
    num_workers: int = Field(0, ge=0)
    progress_bar: bool = True


class ModelSpec(Strict):
    name: str = Field(description="registry name: mlp, cnn1d, cnn2d, resnet, transformer, "
                      "torchvision:<name>, import:<module>:<Class>")
    kwargs: dict[str, Any] = {}


class ImageViews(Strict):
    """How encoded images of any size become fixed-size inputs (streaming path, decoded in loader workers).

    `train` is the view of training batches; `eval` the view of val/test, soft targets and offline
    distillation (cached teacher logits are computed on it, so a student joined to them sees it too)."""

    train: Literal["random_resized_crop", "center_crop", "resize"] = "random_resized_crop"
    eval: Literal["center_crop", "resize"] = "center_crop"
    scale: tuple[float, float] = Field((0.35, 1.0), description="random_resized_crop: area fraction range")
    ratio: tuple[float, float] = Field((0.75, 4 / 3), description="random_resized_crop: aspect ratio range")
    flip: bool = Field(True, description="random_resized_crop: random horizontal flip")
    crop_fraction: float = Field(0.875, gt=0, le=1, description="center_crop: resize the shorter side to "
                                 "size / crop_fraction, then crop the center")

    @model_validator(mode="after")
    def _ranges(self) -> ImageViews:
        if not (0 < self.scale[0] <= self.scale[1] <= 1 and 0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError("data.views: scale needs 0 < low <= high <= 1 and ratio 0 < low <= high")
        return self


class TextData(Strict):
    """Text sources (kdflow.names.data_sources, kind text) read as text: tokenized once in prepare with the
    teacher's own tokenizer, token ids stored unpadded, padded per batch (docs/text.md)."""

    column: str = Field("text", min_length=1, description="the text column")
    pair_column: str | None = Field(None, description="second text column for sentence-pair tasks")
    tokenizer: str = Field(min_length=1, description="a local Hugging Face tokenizer directory (fast "
                           "tokenizer; usually the teacher's own directory); nothing is downloaded")
    max_length: int = Field(128, ge=4, le=4096, description="tokens per sample, special tokens included")
    truncation_side: Literal["right", "left"] = "right"
    transfer: str | None = Field(None, description="unlabeled text for the transfer split: a source ("
                                 + describe("text") + ") with the same text column(s); labels ignored")
    test: str | None = Field(None, description="a predefined labeled test split (e.g. GLUE dev), same columns")
    test_column: str | None = Field(None, description="the test source's text column, if named otherwise")
    mask_copies: int = Field(0, ge=0, le=20, description="transfer-set augmentation (Tang et al. 2019): this "
                             "many augmented copies of each train sample (tokens masked with mask_prob, cut to an "
                             "n-gram with ngram_prob), added to the transfer split unlabeled (the teacher labels them)")
    mask_prob: float = Field(0.1, ge=0, lt=1, description="mask_copies: chance that a token becomes [MASK]")
    ngram_prob: float = Field(0.0, ge=0, le=1, description="mask_copies: chance that a copy is cut to a random "
                              "n-gram of its words, n uniform in 1..ngram_max (Tang et al.'s p_ng)")
    ngram_max: int = Field(5, ge=1, le=64, description="ngram_prob: the longest n-gram, in words")
    student_tokenizer: str | None = Field(None, description="a student with its own vocabulary: a local tokenizer "
                                          "dir; prepare tokenizes the same texts with it too (dataset student/)")
    student_vocab: int | None = Field(None, ge=100, le=1_000_000, description="a student with its own vocabulary: "
                                      "train a tokenizer of the teacher's kind with this many tokens on the train "
                                      "texts in prepare")

    @model_validator(mode="after")
    def _augment_changes_something(self) -> TextData:
        if self.mask_copies and not (self.mask_prob or self.ngram_prob):
            raise ValueError("data.text.mask_copies needs mask_prob > 0 or ngram_prob > 0 (else the copies are "
                             "the train samples again)")
        if self.student_tokenizer and self.student_vocab:
            raise ValueError("data.text: set student_tokenizer (a dir) or student_vocab (train one), not both")
        if self.ngram_prob and self.pair_column:
            raise ValueError("data.text.ngram_prob: n-gram sampling is for single-sentence tasks (a cut pair "
                             "loses its second sentence); use mask_prob for pairs")
        return self


class Data(Strict):
    source: str = Field("mnist1d", description="a scheme of kdflow.names.data_sources: " + describe() + " (paths "
                        "may be fsspec URLs for the encoded-image sources)")
    num_samples: int = Field(6000, ge=20, description="mnist1d: samples generated")
    seed: int = 0
    val_size: float = Field(0.1, gt=0, description="fraction (<1) or count (>=1)")
    test_size: float = Field(0.2, gt=0, description="fraction or count; unused if the source has a test split")
    train_limit: int | None = Field(None, ge=10, description="keep at most this many labeled train samples")
    transfer_size: int = Field(0, ge=0, description="unlabeled transfer samples (0 = none)")
    label_column: str = "label"
    image_size: list[int] | None = Field(None, description="imagefolder: [H, W] to resize to")
    grayscale: bool = False
    allow_test_leakage: bool = False
    rev: str | None = Field(None, description="DVC-tracked source: git revision")
    repo: str | None = Field(None, description="DVC-tracked source: repo URL or path")
    format: Literal["auto", "memory", "streaming"] = Field(
        "auto", description="memory: float arrays in .npz loaded whole; streaming: encoded images in Arrow "
        "shards decoded in loader workers; auto: streaming for encoded-image sources whose decoded size "
        "exceeds memory_limit_mb")
    memory_limit_mb: float = Field(1024, gt=0, description="auto: the largest decoded float32 dataset kept in memory")
    views: ImageViews = ImageViews()
    image_column: str = Field("image", description="parquet/datasets sources: the encoded-image column")
    bad_samples: Literal["fail", "skip"] = Field("fail", description="an unreadable image fails prepare "
                                                 "naming its path, or is skipped and counted in dataset.json")
    verify: Literal["decode", "header"] = Field("decode", description="streaming prepare: fully decode each "
                                                "image once (pixels discarded) or only parse its header")
    shard_mb: int = Field(256, ge=1, description="streaming: largest Arrow shard, MB")
    storage_options: dict[str, Any] = Field({}, description="fsspec options for remote paths (s3://, gs://)")
    text: TextData | None = Field(None, description="set: the source is a text table (bad rows follow "
                                  "bad_samples: fail names the line, skip counts it)")


class ModelSource(Strict):
    """An existing model (`kdflow.models.sources`): imported as the teacher, or a role's starting weights."""

    uri: str = Field(min_length=1, description="<scheme>:<ref> or a bare path (kdflow.names.model_sources): "
                     + "; ".join(f"{s.scheme}: {s.help}" for s in MODEL_SOURCES.values()))
    weights: str | None = Field(None, description="import:/timm:/torchvision: state_dict file (.pt, loaded with "
                                "weights_only=True, or .safetensors)")
    kwargs: dict[str, Any] = Field({}, description="constructor kwargs (import:/timm:/torchvision:) or "
                                   "from_pretrained kwargs (Hugging Face)")
    strict: bool = Field(True, description="missing/unexpected state_dict keys are an error")
    classes: list[str] | None = Field(None, description="class names in the model's output order "
                                      "(default: the model's own, if it has them)")
    input_shape: list[int] | None = Field(None, description="the input shape the model needs (default: its config)")
    mean: list[float] | None = Field(None, description="per-channel normalization of [0, 1] inputs (default: the "
                                     "model's config, else the dataset's; identity for .pt2/.onnx)")
    std: list[float] | None = None

    @model_validator(mode="after")
    def _normalization(self) -> ModelSource:
        if (self.mean is None) != (self.std is None) or (self.mean and len(self.mean) != len(self.std)):
            raise ValueError("source.mean and source.std go together, one value per channel")
        if self.std and min(self.std) <= 0:
            raise ValueError("source.std must be positive")
        return self


class Role(Strict):
    model: ModelSpec | None = Field(None, description="the architecture to train (teacher: or `source`)")
    source: ModelSource | None = Field(None, description="teacher only: import this model instead of training one")
    init_from: ModelSource | None = Field(None, description="start training from this model's weights "
                                          "(its architecture replaces `model`)")
    train: Train = Train()

    def check(self, role: str) -> None:
        if role == "student" and self.source is not None:
            raise ValueError("student.source: the student is always trained; start it from existing weights "
                             "with student.init_from")
        if self.source is not None and self.init_from is not None:
            raise ValueError(f"{role}: set source (import, no training) or init_from (train from it), not both")
        if self.model is None and self.source is None and self.init_from is None:
            raise ValueError(f"{role} needs model (an architecture to train)"
                             + (", source (a model to import)" if role == "teacher" else "") + " or init_from")


class SoftTargets(Strict):
    batch_size: int = Field(1024, ge=1)
    topk: int | None = Field(None, ge=1, description="keep only the k largest logits per sample")
    shard_size: int = Field(65536, ge=1)
    splits: list[Literal["train", "val", "transfer"]] = ["train", "val", "transfer"]
    mode: Literal["offline", "online"] = Field(
        "offline", description="offline: cached logits joined by sample id (the fast path); online: the "
        "teacher runs on every (augmented) student batch")


class FeaturePair(Strict):
    """One intermediate-layer term: a student module matched to a teacher module (paths relative to `.net`)."""

    method: str = Field("hint", description="feature loss (kdflow.names.losses): " + FEATURE_LOSS_NAMES.describe())
    student: str = Field(description="student module path, e.g. features.2")
    teacher: str = Field(description="teacher module path, e.g. features.6")
    weight: float = Field(1.0, ge=0)
    params: dict[str, Any] = Field({}, description="the method's own parameters (hint: loss mse|cosine; "
                                   "attention: p)")

    @model_validator(mode="after")
    def _method_known(self) -> FeaturePair:
        self.params = FEATURE_LOSS_NAMES.check(self.method, self.params)
        return self


class Distill(Strict):
    loss: str = Field("kd", description="output loss (kdflow.names.losses): " + LOSS_NAMES.describe())
    loss_params: dict[str, Any] = Field({}, description="the loss's own parameters (dkd: tckd, nckd)")
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1, description="loss = (1-alpha)·CE(labels) + alpha·KD term")
    use_transfer: bool = True
    labeled_fraction: float | None = Field(
        None, gt=0, le=1, description="with a transfer set: share of labeled samples per batch (labeled "
        "samples are oversampled); null = labeled and transfer shuffled as one pool")
    features: list[FeaturePair] = Field([], description="intermediate-layer terms (hint, attention); they run "
                                         "the teacher on every batch")
    from_sweep: str | None = Field(None, description="a `kdflow sweep` best.yaml whose distill values win")
    word_embeddings: Literal["random", "teacher_pca"] = Field(
        "random", description="text students: teacher_pca starts the student's word embeddings from the "
        "teacher's (same vocabulary), reduced to the student's width by PCA; needs the teacher model")
    train: Train = Train()

    @model_validator(mode="after")
    def _loss_known(self) -> Distill:
        self.loss_params = LOSS_NAMES.check(self.loss, self.loss_params)
        return self


class EnsembleMember(Strict):
    """An extra teacher: the `teacher` role with its own seed and, optionally, its own model or training."""

    seed: int = 0
    model: ModelSpec | None = None
    train: Train | None = None


class Ensemble(Strict):
    teachers: dict[str, EnsembleMember] = Field({}, description="extra teachers (foreach stage in methods/)")
    include_main: bool = Field(True, description="the main teacher's store comes first in the combination")
    combine: str = Field("mean_prob", description="teacher combiner (kdflow.names.losses): "
                         + COMBINER_NAMES.describe())
    combine_params: dict[str, Any] = {}
    weights: list[float] | None = Field(None, description="per-teacher weights in the combined store's order; "
                                        "null = equal")

    @model_validator(mode="after")
    def _weights_valid(self) -> Ensemble:
        if self.weights is not None and (min(self.weights, default=-1) < 0 or sum(self.weights) <= 0):
            raise ValueError("ensemble.weights must be non-negative with a positive sum")
        self.combine_params = COMBINER_NAMES.check(self.combine, self.combine_params)
        reserved = {"main", "data"} & set(self.teachers)
        if reserved:
            raise ValueError(f"ensemble.teachers names {sorted(reserved)} are reserved (main teacher, dataset)")
        return self


class BornAgain(Strict):
    generations: int = Field(3, ge=1, description="K: generation k+1 is distilled from generation k")


class Range(Strict):
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError("a range needs low < high (and low > 0 when log)")
        return self


class Sweep(Strict):
    strategy: Literal["grid", "random"] = "grid"
    space: dict[str, list[float] | Range] = Field(
        {"temperature": [1.0, 2.0, 4.0, 8.0], "alpha": [0.5, 0.9]},
        description="key under `distill` (dotted: loss_params.nckd, features.0.weight) -> list of values, or "
        "{low, high, log} (random only)")
    trials: int = Field(20, ge=1, description="random: number of draws; grid: refuse larger grids")
    epochs: int | None = Field(None, ge=1, description="epochs per trial (null = distill.train.epochs)")
    seed: int = 0


class Compress(Strict):
    int8: bool = Field(True, description="dynamic int8 quantization (Linear layers) in the evaluate stage")
    onnx: bool = Field(True, description="ONNX export + onnxruntime parity check in the evaluate stage")
    opset: int = Field(17, ge=9)
    int8_accuracy_budget: float = Field(0.01, ge=0, le=1, description="onnxruntime int8 is chosen only when "
                                        "faster than fp32 and losing at most this accuracy (fraction)")
    calibration_samples: int = Field(256, ge=1, description="training samples that calibrate int8 ranges")


class Inference(Strict):
    backend: Literal["auto", "torch", "onnx", "eager"] = Field(
        "auto", description="how soft targets and evaluate run a model: auto = the faster of torch "
        "(BN folded, channels_last) and onnxruntime, as measured when the model was saved (model.json "
        "`inference`); eager = the module as is")


class Finetune(Strict):
    train: Train = Train(epochs=0, lr=1e-4)


class Evaluate(Strict):
    noise_sigma: list[float] = [0.1, 0.3]
    fgsm_eps: list[float] = [0.05]
    ood: Literal["noise", "uniform"] = "noise"
    ood_samples: int = Field(1000, ge=10)
    latency_repeats: int = Field(200, ge=5)
    throughput_batch: int = Field(256, ge=1)
    threads: int = Field(2, ge=1, description="torch/onnxruntime threads while timing: fixed, so runs compare")
    calibration_bins: int = Field(15, ge=2)
    probe_c: float = Field(1.0, gt=0, description="task embedding: inverse L2 strength of the linear probe "
                           "(logistic regression on standardized frozen embeddings)")
    probe_train_samples: int = Field(20000, ge=10, description="task embedding: labeled train samples the "
                                     "probe is fitted on (the first ones of the train split)")


class Gate(Strict):
    min_retention: float | None = None
    min_speedup: float | None = None
    max_ece: float | None = None
    min_kd_gain: float | None = None


class Register(Strict):
    model_name: str = "kdflow-student"
    experiment: str = "kdflow"
    gate: Gate = Gate()


class Params(Strict):
    seed: int = 0
    task: Literal[TASK_NAMES] = Field(
        "classification", description="what is distilled (kdflow/tasks/names.py). embedding: distill a sentence "
        "encoder (teacher.source encoder:<dir>, "
        "student text-embed, an embedding_* loss; the store holds the teacher's embeddings; docs/text.md)")
    data: Data = Data()
    teacher: Role
    student: Role
    soft_targets: SoftTargets = SoftTargets()
    distill: Distill = Distill()
    finetune: Finetune = Finetune()
    evaluate: Evaluate = Evaluate()
    register: Register = Register()
    kubeflow: dict[str, Any] = Field({}, description="cluster settings, owned and validated by kdflow.kfp "
                                     "(kdflow.kfp.schema.Kubeflow); not part of the lineage hash")
    ensemble: Ensemble = Ensemble()
    born_again: BornAgain = BornAgain()
    sweep: Sweep = Sweep()
    compress: Compress = Compress()
    inference: Inference = Inference()

    @model_validator(mode="after")
    def _roles(self) -> Params:
        self.teacher.check("teacher")
        self.student.check("student")
        sources = [(r, k, s) for r in ("teacher", "student") for k in ("source", "init_from")
                   if (s := getattr(getattr(self, r), k)) is not None]
        for role, key, src in sources:
            if (problem := check_options(src)) is not None:
                raise ValueError(f"{role}.{key}: {problem}")
            if not is_program(src.uri):
                continue
            if key == "init_from":
                raise ValueError(f"{role}.init_from '{src.uri}' is an exported program: it cannot be trained")
            if self.soft_targets.mode == "online" or self.distill.features:
                raise ValueError(f"teacher.source '{src.uri}' is an exported program without Python modules: "
                                 "it can only give offline soft targets (soft_targets.mode: offline, "
                                 "no distill.features)")
        return self

    @model_validator(mode="after")
    def _online_needs_teacher(self) -> Params:
        if self.distill.train.augment.enabled and self.soft_targets.mode == "offline":
            raise ValueError(
                "distill.train.augment.enabled needs soft_targets.mode: online "
                "(cached teacher logits do not match augmented inputs)"
            )
        return self

    @model_validator(mode="after")
    def _task_consistent(self) -> Params:
        emb = self.task == "embedding"
        if (LOSS_NAMES[self.distill.loss].target == "embedding") != emb:
            raise ValueError(f"distill.loss '{self.distill.loss}' " + (
                "is a classification loss but task is embedding: use embedding_mse or embedding_cosine" if emb else
                "is an embedding loss: set task: embedding (or use a classification loss: kd, dkd)"))
        student = self.student.model.name if self.student.model is not None else None
        if (student == "text-embed") != emb and student is not None:
            raise ValueError(f"student.model '{student}' " + (
                "is not a sentence encoder: task embedding needs text-embed" if emb else
                "is a sentence encoder: set task: embedding"))
        if not emb:
            return self
        problems = [m for bad, m in (
            (self.data.text is None, "data.text (a text dataset)"),
            (self.data.text is not None and bool(self.data.text.student_tokenizer or self.data.text.student_vocab),
             "the student to share the teacher's tokenizer (no data.text.student_tokenizer/student_vocab yet)"),
            (self.teacher.source is None, "teacher.source (a sentence encoder to import: encoder:<dir>)"),
            (self.student.model is not None and not isinstance(self.student.model.kwargs.get("dim"), int),
             "student.model.kwargs.dim: the teacher's embedding width (e.g. 384; the student projects to it)"),
            (self.soft_targets.topk is not None, "soft_targets.topk: null (embeddings are stored whole)"),
            (bool(self.distill.features), "no distill.features"),
            (self.finetune.train.epochs > 0, "finetune.train.epochs: 0 (hard-label fine-tuning does not apply "
                                              "to an encoder)"),
            (self.register.gate.max_ece is not None, "no register.gate.max_ece (an encoder has no calibration)"),
        ) if bad]
        if problems:
            raise ValueError("task: embedding needs " + "; ".join(problems))
        return self

    def digest(self) -> str:
        """Stable hash of the validated params (lineage tag)."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"kubeflow", "inference"}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _describe(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "<root>"
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return f"unknown key '{loc}' (value {err['input']!r}); check the spelling against params.yaml"
    if kind == "missing":
        return f"missing key '{loc}'"
    if not err["loc"]:  # a cross-section check: its message names the keys
        return msg.removeprefix("Value error, ")
    if kind == "value_error":  # a cross-field check (e.g. a loss name and its params): its own message says it all
        return f"'{loc}': {msg.removeprefix('Value error, ')}"
    return f"bad value for '{loc}': {err['input']!r} ({msg})"


def validate(data: dict, origin: str = "params") -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors()
        lines = [_describe(e) for e in errs]
        raise KdflowError(f"{origin}: " + "; ".join(lines)) from None


def set_key(data: dict, dotted: str, value: Any) -> None:
    """Apply an override like `distill.temperature=8` to a raw params dict."""
    node = data
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise KdflowError(f"override '{dotted}': '{p}' is not a section")
    node[leaf] = value


def load_raw(path: str | Path, overrides: list[str] | None = None) -> dict:
    """params.yaml as a plain dict with `key.path=value` overrides applied (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise KdflowError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise KdflowError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise KdflowError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise KdflowError(f"override '{item}' must look like key.path=value")
        set_key(data, key, yaml.safe_load(raw))
    return data


def load_params(path: str | Path, overrides: list[str] | None = None) -> Params:
    return validate(load_raw(path, overrides), str(path))
