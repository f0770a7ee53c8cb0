"""Stage `finetune`: optional hard-label fine-tuning of the distilled student (epochs 0 = pass through)."""

from __future__ import annotations

import shutil
from pathlib import Path

from kdflow.config import Params
from kdflow.data.reader import for_student, load_info
from kdflow.io import atomic_dir
from kdflow.lit.modules import ClassifierModule
from kdflow.models import load_model
from kdflow.stages.common import check_classes, ckpt_dir_for, need, seed_all, train_and_save


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    data, student = for_student(need(inputs, "data", "finetune")), need(inputs, "student", "finetune")
    model, spec = load_model(student)
    check_classes(spec, load_info(data), f"student {student}")
    t = cfg.finetune.train
    if t.epochs == 0:
        out = need(outputs, "model", "finetune")
        with atomic_dir(out) as tmp:
            for f in student.iterdir():
                (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / f.name)  # a text model's tokenizer/
        # The checkpoint dir is a declared (persisted) DVC output even when nothing trains.
        ckpt_dir_for(outputs, out).mkdir(parents=True, exist_ok=True)
        return {"finetuned": False}
    seed_all(cfg.seed)
    base = {k: spec[k] for k in ("name", "kwargs", "input_shape", "num_classes", "classes", "mean", "std",
                                 "modality", "text") if k in spec}
    lineage = {**spec.get("lineage", {}), "finetuned_from": str(student)}
    out = train_and_save(cfg, "finetune", "student", ClassifierModule(model.train(), t, cfg.seed), base, t,
                         data, outputs, cfg.finetune.model_dump(mode="json"), lineage=lineage)
    return {"finetuned": True, **out}
