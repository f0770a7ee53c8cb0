"""Stage `born_again`: self-distillation over K generations (Furlanello et al., ICML 2018).

Generation 0 is any trained model (usually the no-KD baseline of the student architecture).
Generation k+1 — same architecture, fresh initialization — is distilled from generation k with the
`distill` settings (loss, T, α, transfer set, labeled_fraction, epochs). Each generation's logits
are computed once over train/val/transfer (the cached-table path of the distill stage; with
`soft_targets.mode: online` the parent runs on every batch instead). Output:
`gen-0` … `gen-K` model directories and `generations.json` (validation accuracy per generation);
the evaluate stage reports every generation on the test split.

    kdflow born-again --params params.yaml --data D --teacher models/baseline --out OUT
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from kdflow.config import Params
from kdflow.data.reader import for_student, has_split, load_info, load_split
from kdflow.data.tokenized import is_text
from kdflow.errors import KdflowError
from kdflow.io import atomic_dir, sha256_file, write_json
from kdflow.lit.distill import DistillModule
from kdflow.models import build_model, load_model
from kdflow.stages.common import check_classes, need, seed_all, train_and_save
from kdflow.stages.soft_targets import teacher_logits

SPEC_KEYS = ("name", "kwargs", "input_shape", "num_classes", "classes", "mean", "std")
SUMMARY = "generations.json"


def _table(model: torch.nn.Module, x: np.ndarray, ids: np.ndarray, batch_size: int) -> torch.Tensor:
    logits = torch.from_numpy(teacher_logits(model, x, batch_size))
    table = torch.full((int(ids.max()) + 1, logits.shape[1]), float("nan"))
    table[torch.from_numpy(ids)] = logits
    return table


@torch.inference_mode()
def _val_acc(model: torch.nn.Module, val: dict) -> float:
    return float((model(torch.from_numpy(val["x"])).argmax(1).numpy() == val["y"]).mean())


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    data, gen0 = for_student(need(inputs, "data", "born_again")), need(inputs, "teacher", "born_again")
    out = need(outputs, "generations", "born_again")
    info = load_info(data)
    if is_text(info):  # generations read dense `x` arrays; text splits are ragged token ids padded per batch
        raise KdflowError(f"born_again: {data} is text data; born-again generations support tensor data only "
                          "(use distill with a text teacher)")
    model, spec0 = load_model(gen0)
    check_classes(spec0, info, f"generation 0 {gen0}")
    spec = {k: spec0[k] for k in SPEC_KEYS}
    d = cfg.distill
    # has_split: a streaming dataset holds transfer/ (Arrow), not transfer.npz
    names = ["train", "val"] + (["transfer"] if d.use_transfer and has_split(data, "transfer") else [])
    parts = [load_split(data, s) for s in names]
    x, ids = np.concatenate([p["x"] for p in parts]), np.concatenate([p["id"] for p in parts])
    val = parts[1]
    ckroot = Path(outputs.get("checkpoints") or out.parent / f".{out.name}.ckpt")
    rows = [{"generation": 0, "path": "gen-0", "source": str(gen0), "val_acc": _val_acc(model, val),
             "params": spec0.get("params")}]
    with atomic_dir(out) as tmp:
        shutil.copytree(gen0, tmp / "gen-0")
        for k in range(1, cfg.born_again.generations + 1):
            parent = tmp / f"gen-{k - 1}"
            seed = cfg.seed * 1000 + k  # a fresh initialization per generation
            seed_all(seed)
            online = cfg.soft_targets.mode == "online"  # e.g. augmented batches: the parent runs on each
            table = None if online else _table(model, x, ids, cfg.soft_targets.batch_size)
            module = DistillModule(build_model(spec), d, seed, table=table,
                                   teacher=model if online or d.features else None,
                                   input_shape=list(spec["input_shape"]), text=spec0.get("text"))
            lineage = {"born_again": {"generation": k, "parent": f"gen-{k - 1}", "gen0": str(gen0)},
                       "teacher_hash": sha256_file(parent / "model.pt")}
            res = train_and_save(cfg, "born_again", "student", module, spec, d.train, data,
                                 {"model": tmp / f"gen-{k}", "checkpoints": ckroot / f"gen-{k}"},
                                 {**d.model_dump(mode="json"), "generation": k}, with_transfer=d.use_transfer,
                                 lineage=lineage, labeled_fraction=d.labeled_fraction)
            model, _ = load_model(tmp / f"gen-{k}")
            rows.append({"generation": k, "path": f"gen-{k}", "val_acc": _val_acc(model, val),
                         "params": res.get("params"), "seconds": round(res.get("train_seconds", 0.0), 2)})
        write_json(tmp / SUMMARY, {"generations": rows, "base": str(gen0), "distill": d.model_dump(mode="json")})
    shutil.rmtree(ckroot, ignore_errors=True)
    return {"generations": rows, "transfer_samples": len(parts[2]["id"]) if len(parts) > 2 else 0}


def generation_dirs(path: Path) -> list[tuple[int, Path]]:
    """(k, dir) of a born-again output, in generation order."""
    gens = [(int(p.name.split("-", 1)[1]), p) for p in Path(path).glob("gen-*") if (p / "model.json").is_file()]
    return sorted(gens)
