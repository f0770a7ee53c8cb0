"""What the training stages share: model specs from data, fitting + saving, rank-zero duties."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from kdflow import tasks, tracking
from kdflow.config import ModelSpec, Params, Role, Train
from kdflow.data.module import KDDataModule
from kdflow.data.reader import load_info
from kdflow.errors import KdflowError
from kdflow.inference import choose
from kdflow.io import atomic_dir, need  # noqa: F401  (need: re-exported for the stages)
from kdflow.lit.fit import fit
from kdflow.models import save_model


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0 and \
        int(os.environ.get("NODE_RANK", "0")) == 0


def spec_for(model: ModelSpec | None, info: dict) -> dict[str, Any]:
    if model is None:
        raise KdflowError("this command builds the role's `model`; the role names none (it uses source/init_from)")
    from kdflow.models.text_nets import text_spec

    return {"name": model.name, "kwargs": model.kwargs, "input_shape": info["input_shape"],
            "num_classes": info["num_classes"], "classes": info["classes"],
            "mean": info["normalization"]["mean"], "std": info["normalization"]["std"], **text_spec(info)}


def attach_tokenizer(model_dir: Path, data_dir: Path) -> None:
    """A text model carries the tokenizer it was trained with (serving and export tokenize with it)."""
    from kdflow.data.tokenized import TOKENIZER_DIR

    if (Path(data_dir) / TOKENIZER_DIR).is_dir():
        shutil.copytree(Path(data_dir) / TOKENIZER_DIR, Path(model_dir) / TOKENIZER_DIR, dirs_exist_ok=True)


def check_classes(spec: dict, info: dict, what: str) -> None:
    if spec["num_classes"] != info["num_classes"]:
        raise KdflowError(f"{what} has {spec['num_classes']} classes but the dataset has {info['num_classes']}")
    if list(spec["input_shape"]) != list(info["input_shape"]):
        raise KdflowError(f"{what} expects input shape {spec['input_shape']} but the dataset has "
                          f"{info['input_shape']}")


def ckpt_dir_for(outputs: dict[str, Path], out: Path) -> Path:
    return Path(outputs.get("checkpoints") or out.parent / f".{out.name}.ckpt")


def train_and_save(cfg: Params, stage: str, role: str, module: L.LightningModule, spec: dict, train: Train,
                   data_dir: Path, outputs: dict[str, Path], section: dict, with_transfer: bool = False,
                   lineage: dict | None = None, labeled_fraction: float | None = None) -> dict:
    """Fit `module` (whose `.model` is the network to save) and write the model directory."""
    out = need(outputs, "model", stage)
    info = load_info(data_dir)
    dm = KDDataModule(data_dir, train.batch_size, cfg.seed, with_transfer, train.num_workers,
                      labeled_fraction=labeled_fraction)
    ckpt = ckpt_dir_for(outputs, out)
    fingerprint = f"{stage}:{cfg.digest()}:{info['hash']}:{(lineage or {}).get('teacher_hash', '')}"
    rank0 = is_rank_zero()
    run_ctx = tracking.stage_run(cfg, stage, section, info["hash"]) if rank0 else contextlib.nullcontext()
    with run_ctx as run:
        t0 = time.perf_counter()
        hist = fit(module, dm, train, ckpt, fingerprint, run.info.run_id if run else None)
        seconds = time.perf_counter() - t0
        if not (rank0 and hist["is_global_zero"]):
            return {"rank": "non-zero"}
        meta = {"role": role, "lineage": {**tracking.lineage(cfg, info["hash"]), **(lineage or {})},
                "training": {"epochs_run": hist["epochs_run"], "best_val_acc": hist["best_val_acc"],
                             "seconds": round(seconds, 2), "resumed": hist["resumed"]},
                "inference": choose(module.model.eval(), spec)}
        with atomic_dir(out) as tmp:
            doc = save_model(module.model, tmp, spec, **meta)
            (tmp / "curves.csv").write_text(hist["curves_csv"])
            attach_tokenizer(tmp, data_dir)
        summary = {"params": doc["params"], "best_val_acc": hist["best_val_acc"], "train_seconds": seconds,
                   "epochs_run": hist["epochs_run"], "resumed": hist["resumed"]}
        tracking.log_metrics({k: v for k, v in summary.items() if isinstance(v, float | int)})
        tracking.log_artifacts(out / "model.json", out / "curves.csv")
    # Keep the (persisted) directory for DVC, drop the checkpoints: a later run must not resume a finished one.
    shutil.rmtree(ckpt, ignore_errors=True)
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "status.json").write_text(json.dumps({"complete": True, "fingerprint": fingerprint}))
    return summary


def train_on_labels(cfg: Params, stage: str, role: str, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    """A model of `cfg.<role>` trained on hard labels: the teacher, and the student as the no-KD baseline."""
    from kdflow.data.reader import for_student
    from kdflow.lit.modules import ClassifierModule

    data = need(inputs, "data", stage)
    data = data if role == "teacher" else for_student(data)
    section = getattr(cfg, "teacher" if role == "teacher" else "student")
    seed_all(cfg.seed)
    model, spec = initial_model(section, load_info(data), role)
    check_task(cfg, spec, f"{role} {spec['name']}")
    if not tasks.of_spec(spec).has_labels():  # e.g. an encoder: the no-KD reference is the student as initialised
        return save_untrained(cfg, stage, role, model, spec, data, outputs)
    module = ClassifierModule(model, section.train, cfg.seed)
    return train_and_save(cfg, stage, role, module, spec, section.train, data, outputs, section.model_dump(mode="json"))


def save_untrained(cfg: Params, stage: str, role: str, model: torch.nn.Module, spec: dict, data_dir: Path,
                   outputs: dict[str, Path]) -> dict:
    """The model as built, written as an ordinary model directory (0 epochs)."""
    out = need(outputs, "model", stage)
    info = load_info(data_dir)
    meta = {"role": role, "lineage": tracking.lineage(cfg, info["hash"]),
            "training": {"epochs_run": 0, "best_val_acc": None, "seconds": 0.0, "untrained": True},
            "inference": choose(model.eval(), spec)}
    with atomic_dir(out) as tmp:
        doc = save_model(model, tmp, spec, **meta)
        attach_tokenizer(tmp, data_dir)
    ckpt_dir_for(outputs, out).mkdir(parents=True, exist_ok=True)  # a declared (persisted) DVC output
    return {"params": doc["params"], "untrained": True, "best_val_acc": None}


def initial_model(section: Role, info: dict, role: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network a role starts training from: `<role>.model` freshly built, or `<role>.init_from`'s weights."""
    from kdflow.models import build_model

    if section.init_from is None:
        spec = spec_for(section.model, info)
        model = build_model(spec)
    else:
        from kdflow.models.imported import import_model

        model, spec, _ = import_model(section.init_from, info, f"{role}.init_from")
        spec["init_from"] = spec.pop("source")
    if section.model is not None and section.model.name in EMBED_NAMES or spec.get("task") == "embedding":
        from kdflow.models.text_embed import EMBEDDING, embedding_dim

        spec |= {"task": EMBEDDING, "embedding_dim": embedding_dim(model, info)}
    return model.train(), spec


EMBED_NAMES = ("text-embed",)  # registry models that output sentence vectors (kdflow.models.text_embed)


def check_task(cfg: Params, spec: dict, what: str) -> None:
    """A model's kind (classifier or sentence encoder) must match `task`: one clear error otherwise."""
    kind = spec.get("task", "classification")
    if kind != cfg.task:
        raise KdflowError(f"{what} is a {'sentence encoder' if kind == 'embedding' else 'classifier'} but task is "
                          f"{cfg.task}" + (": import the teacher with teacher.source encoder:<dir>"
                                           if cfg.task == "embedding" else ": set task: embedding"))


def seed_all(seed: int) -> None:
    L.seed_everything(seed, workers=True, verbose=False)
