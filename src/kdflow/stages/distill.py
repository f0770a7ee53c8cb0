"""Stage `distill`: the student learns from hard labels and the teacher's logits.

Offline (default): the cached store is joined by sample id; a multi-teacher store (from
`combine_teachers`) is averaged in probability space at the distillation temperature. Online: the
teacher runs on each (augmented) batch. Feature terms (`distill.features`: FitNets hints,
attention transfer) load the teacher in either mode and run it on every batch for its features.
Transfer samples (label -1) contribute only the KD term; `distill.labeled_fraction` fixes the
labeled share of each batch. `distill.from_sweep` takes T/α (and method weights) from a sweep.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kdflow import tasks
from kdflow.config import Params
from kdflow.data.reader import for_student, has_split, load_info, open_dataset, split_ids
from kdflow.errors import KdflowError
from kdflow.io import read_json, sha256_file
from kdflow.lit.distill import DistillModule
from kdflow.models import build_model, load_model
from kdflow.soft_target_store import MANIFEST, MappedTable, count_missing, lookup_table
from kdflow.stages.common import check_classes, check_task, initial_model, need, seed_all, train_and_save


def offline_table(data: Path, store: Path, info: dict, use_transfer: bool) -> tuple[torch.Tensor, dict]:
    """The store as an id-indexed table, checked against the dataset's coverage (its fit to the student is the
    task's `check_signal`): dense in RAM for an in-memory dataset, memory-mapped from disk for a streaming one."""
    manifest = read_json(Path(store) / MANIFEST, "soft-target manifest")
    reader = open_dataset(data)
    table = MappedTable(store) if reader.streaming else lookup_table(store)
    needed = ["train", "val"] + (["transfer"] if use_transfer and reader.has("transfer") else [])
    for split in needed:
        missing = count_missing(table, reader.ids(split))
        if missing:
            raise KdflowError(f"soft targets {store} miss {missing} samples of the {split} split: "
                              "regenerate them for this dataset")
    return table, manifest


def build_module(cfg: Params, inputs: dict[str, Path], info: dict, spec: dict, table: torch.Tensor | None = None,
                 manifest: dict | None = None, student: torch.nn.Module | None = None,
                 seed: int | None = None) -> tuple[DistillModule, dict]:
    """The DistillModule for `cfg` plus the lineage of its teacher signal. Shared by distill, sweep, born-again.

    `table`/`manifest` may be passed in (a sweep reads the store once for all trials).
    """
    d = cfg.distill
    student = student if student is not None else build_model(spec)
    seed = cfg.seed if seed is None else seed
    teacher = None
    online = cfg.soft_targets.mode == "online"
    if (online or d.features) and info.get("view"):
        raise KdflowError("the student has its own vocabulary (data.text.student_tokenizer/student_vocab): "
                          f"{'soft_targets.mode: online' if online else 'distill.features'} would run the teacher on "
                          "the student's token ids; use cached soft targets (offline) without feature terms")
    if online or d.features:
        teacher_dir = need(inputs, "teacher", "distill")
        teacher, tspec = load_model(teacher_dir)
        check_classes(tspec, info, f"teacher {teacher_dir}")
    if online:
        source = {"teacher": str(inputs["teacher"]),
                  "teacher_hash": sha256_file(Path(inputs["teacher"]) / "model.pt"),
                  "teachers": [{"path": str(inputs["teacher"]), "name": tspec["name"]}]}
        table, weights = None, None
    else:
        store = need(inputs, "soft_targets", "distill")
        if table is None:
            table, manifest = offline_table(Path(inputs["data"]), store, info, d.use_transfer)
        weights = cfg.ensemble.weights if table.dim() == 3 else None
        source = {"soft_targets": str(store), "teacher_hash": manifest["checksum"],
                  "teachers": manifest.get("teachers", [])}
        if table.dim() == 3:
            k = table.shape[1]
            source["ensemble"] = {"num_teachers": k, "weights": weights or [1.0 / k] * k,
                                  "combine": cfg.ensemble.combine}
    if d.features:
        source["features"] = [p.model_dump() for p in d.features]
    task = tasks.of_spec(spec)
    # the teacher signal as a store would describe it: the store's manifest, or the online teacher's spec
    signal = manifest if table is not None else {**tasks.of_spec(tspec).store_meta(tspec),
                                                 "num_classes": tspec["num_classes"]}
    task.check_signal(signal, spec, info)
    module = task.distill_module()(student, d, seed, table=table, teacher=teacher, teacher_weights=weights,
                        input_shape=list(spec["input_shape"]), combine=cfg.ensemble.combine,
                        combine_params=cfg.ensemble.combine_params, text=spec.get("text"))
    return module, source


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    data = for_student(need(inputs, "data", "distill"))
    if cfg.distill.from_sweep:
        from kdflow.stages.sweep import apply_best

        cfg = apply_best(cfg, cfg.distill.from_sweep)
    info = load_info(data)
    d = cfg.distill
    seed_all(cfg.seed)
    student, spec = initial_model(cfg.student, info, "student")
    check_task(cfg, spec, f"student {spec['name']}")
    module, source = build_module(cfg, inputs, info, spec, student=student)
    if d.word_embeddings == "teacher_pca":
        from kdflow.models.text_embed import pca_word_embeddings

        if Path(data) != Path(need(inputs, "data", "distill")):
            raise KdflowError("distill.word_embeddings: teacher_pca needs the student to share the teacher's "
                              "vocabulary (the data has a student tokenizer)")
        teacher, _ = load_model(need(inputs, "teacher", "distill (word_embeddings: teacher_pca)"))
        source["init"] = pca_word_embeddings(student, teacher)
    section = {**d.model_dump(mode="json"), "mode": cfg.soft_targets.mode}
    summary = train_and_save(cfg, "distill", "student", module, spec, d.train, data, outputs, section,
                             with_transfer=d.use_transfer, lineage=source, labeled_fraction=d.labeled_fraction)
    transfer = has_split(data, "transfer") and d.use_transfer
    summary["transfer_samples"] = int(len(split_ids(data, "transfer"))) if transfer else 0
    summary["temperature"], summary["alpha"], summary["loss"] = d.temperature, d.alpha, d.loss
    return summary
