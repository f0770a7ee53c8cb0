"""Stage `distill`: the student learns from hard labels and the teacher's logits.

Offline (default): the cached store is joined by sample id. Online: the teacher runs on each
(augmented) batch. Transfer samples (label -1) contribute only the KD term.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdflow.config import Params
from kdflow.data.module import load_info, load_split
from kdflow.errors import KdflowError
from kdflow.io import read_json, sha256_file
from kdflow.lit.modules import DistillModule
from kdflow.models import build_model, load_model
from kdflow.soft_targets import MANIFEST, lookup_table
from kdflow.stages.common import check_classes, need, seed_all, spec_for, train_and_save


def _offline_table(data: Path, store: Path, info: dict, use_transfer: bool) -> tuple[torch.Tensor, str]:
    manifest = read_json(Path(store) / MANIFEST, "soft-target manifest")
    if manifest["num_classes"] != info["num_classes"]:
        raise KdflowError(f"soft targets have {manifest['num_classes']} classes but the dataset has "
                          f"{info['num_classes']}: teacher/student class-count mismatch")
    table = lookup_table(store)
    needed = ["train", "val"] + (["transfer"] if use_transfer and (data / "transfer.npz").is_file() else [])
    for split in needed:
        ids = torch.from_numpy(load_split(data, split)["id"])
        missing = int((ids >= len(table)).sum()) or int(torch.isnan(table[ids]).any(1).sum())
        if missing:
            raise KdflowError(f"soft targets {store} miss {missing} samples of the {split} split: "
                              "regenerate them for this dataset")
    return table, manifest["checksum"]


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    data = need(inputs, "data", "distill")
    info = load_info(data)
    spec = spec_for(cfg.student.model, info)
    d = cfg.distill
    seed_all(cfg.seed)
    student = build_model(spec)
    if cfg.soft_targets.mode == "online":
        teacher, tspec = load_model(need(inputs, "teacher", "distill"))
        check_classes(tspec, info, "teacher")
        module = DistillModule(student, d, cfg.seed, teacher=teacher)
        source = {"teacher": str(inputs["teacher"]), "teacher_hash": sha256_file(Path(inputs["teacher"]) / "model.pt")}
    else:
        store = need(inputs, "soft_targets", "distill")
        table, checksum = _offline_table(data, store, info, d.use_transfer)
        module = DistillModule(student, d, cfg.seed, table=table)
        teachers = read_json(Path(store) / MANIFEST, "soft-target manifest").get("teachers", [])
        source = {"soft_targets": str(store), "teacher_hash": checksum, "teachers": teachers}
    summary = train_and_save(cfg, "distill", "student", module, spec, d.train, data, outputs,
                             {**d.model_dump(mode="json"), "mode": cfg.soft_targets.mode},
                             with_transfer=d.use_transfer, lineage=source)
    transfer = (data / "transfer.npz").is_file() and d.use_transfer
    summary["transfer_samples"] = int(len(np.load(data / "transfer.npz")["id"])) if transfer else 0
    return summary
