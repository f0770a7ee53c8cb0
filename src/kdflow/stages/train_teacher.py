"""Stage `train_teacher`: the teacher on hard labels (with augmentation if configured)."""

from __future__ import annotations

from pathlib import Path

from kdflow.config import Params
from kdflow.data.module import load_info
from kdflow.lit.modules import ClassifierModule
from kdflow.models import build_model
from kdflow.stages.common import need, seed_all, spec_for, train_and_save


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    data = need(inputs, "data", "train_teacher")
    info = load_info(data)
    spec = spec_for(cfg.teacher.model, info)
    seed_all(cfg.seed)
    module = ClassifierModule(build_model(spec), cfg.teacher.train, cfg.seed)
    return train_and_save(cfg, "train_teacher", "teacher", module, spec, cfg.teacher.train, data, outputs,
                          cfg.teacher.model_dump(mode="json"))
