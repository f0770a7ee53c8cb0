"""Stage `combine_teachers`: several teachers' soft-target stores -> one multi-teacher store.

Every input except `data` is a store; its key names the teacher (KFP passes one artifact per
teacher; `combine`, the CLI/DVC entry, passes `main` and the `ensemble.teachers` members in params order). The
stores must cover the same samples of the same dataset with the same classes. The combined store
keeps each teacher's raw logits, shape (N, K, C), and lists the K teachers in order (name, model,
weights hash, source store checksum): temperature and per-teacher weights (`ensemble.weights`) are
applied at distillation time, where the student learns from the average of softmax(z_k / T).

`train_member` trains one extra teacher of `ensemble.teachers` (the `teacher` role with the
member's seed/model/train) and caches its soft targets: the body of the `foreach` stage.

    kdflow teacher-pool-member --member <name> --params params.yaml --data D --model M --soft-targets S
    kdflow combine-teachers --params params.yaml --data D --main S0 --pool DIR --out OUT
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdflow.config import Params, validate
from kdflow.data.reader import load_info, load_split
from kdflow.errors import KdflowError
from kdflow.io import atomic_dir
from kdflow.soft_target_store import read_store, write_store
from kdflow.stages.common import need


def _align(ids: np.ndarray, logits: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows of `logits` in the order of the sample ids `order` (K axis added for single-teacher stores)."""
    pos = np.argsort(ids)
    rows = pos[np.searchsorted(ids[pos], order)]
    out = logits[rows]
    return out[:, None, :] if out.ndim == 2 else out


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    out = need(outputs, "soft_targets", "combine_teachers")
    stores = {k: Path(v) for k, v in inputs.items() if k != "data"}
    if len(stores) < 2:
        raise KdflowError(f"combine_teachers needs at least two teacher stores, got {len(stores)}")
    loaded = {name: read_store(path) for name, path in stores.items()}
    first_name, (first_ids, _, first) = next(iter(loaded.items()))
    data_hash = load_info(inputs["data"])["hash"] if inputs.get("data") else first.get("data_hash")
    id_set = np.sort(first_ids)
    for name, (ids, _, m) in loaded.items():
        if m["num_classes"] != first["num_classes"]:
            raise KdflowError(f"teacher '{name}' has {m['num_classes']} classes, '{first_name}' has "
                              f"{first['num_classes']}")
        if data_hash and m.get("data_hash") and m["data_hash"] != data_hash:
            raise KdflowError(f"teacher '{name}' ({stores[name]}) was cached for another dataset "
                              f"(data hash {m['data_hash'][:12]} vs {data_hash[:12]})")
        if len(np.unique(ids)) != len(ids):
            raise KdflowError(f"teacher '{name}' store repeats sample ids")
        if len(ids) != len(id_set) or not np.array_equal(np.sort(ids), id_set):
            raise KdflowError(f"teacher '{name}' covers {len(ids)} samples, '{first_name}' {len(id_set)}, and "
                              "they differ: cache every teacher on the same splits of the same dataset")
    if inputs.get("data"):
        for split in first.get("splits", []):
            need_ids = load_split(inputs["data"], split)["id"]
            if not np.isin(need_ids, id_set).all():
                raise KdflowError(f"the stores miss samples of the {split} split")
    stacked = np.concatenate([_align(ids, lg, id_set) for ids, lg, _ in loaded.values()], axis=1)
    teachers = []
    for name, (_, _, m) in loaded.items():
        for t in m.get("teachers", [{}]):
            teachers.append({**t, "member": t.get("member", name), "store": str(stores[name]),
                             "store_checksum": m["checksum"]})
    meta = {"teachers": teachers, "data_hash": data_hash, "splits": first.get("splits", []),
            "combined_from": [{"name": n, "path": str(p), "checksum": loaded[n][2]["checksum"]}
                              for n, p in stores.items()], "combine": "mean of softmax(z_k / T), weights at distill"}
    with atomic_dir(out) as tmp:
        manifest = write_store(tmp, id_set, stacked, cfg.soft_targets.shard_size, None, meta)
    return {"teachers": [t["member"] for t in teachers], "num_teachers": int(stacked.shape[1]),
            "samples": int(len(id_set)), "checksum": manifest["checksum"]}


def member_params(cfg: Params, name: str) -> Params:
    """`cfg` with the `teacher` role (and seed) of ensemble member `name`."""
    members = cfg.ensemble.teachers
    if name not in members:
        raise KdflowError(f"ensemble.teachers has no member '{name}'; members: {', '.join(members) or '(none)'}")
    m = members[name]
    raw = cfg.model_dump(mode="json")
    raw["seed"] = m.seed
    if m.model is not None:
        raw["teacher"]["model"] = m.model.model_dump(mode="json")
    if m.train is not None:
        raw["teacher"]["train"] = m.train.model_dump(mode="json")
    return validate(raw, f"ensemble.teachers.{name}")


def train_member(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path], member: str | None = None) -> dict:
    """Train ensemble member `member` as a teacher and cache its soft targets (one `foreach` item)."""
    from kdflow.stages import soft_targets, train_teacher

    if not member:
        raise KdflowError("teacher_pool_member needs --member NAME (an ensemble.teachers name)")
    mcfg = member_params(cfg, member)
    data = need(inputs, "data", "teacher_pool")
    model, store = need(outputs, "model", "teacher_pool"), need(outputs, "soft_targets", "teacher_pool")
    trained = train_teacher.run(mcfg, {"data": data}, {k: v for k, v in outputs.items() if k in ("model",
                                                                                               "checkpoints")})
    cached = soft_targets.run(mcfg, {"data": data, "teacher": model}, {"soft_targets": store})
    return {"member": member, "teacher": trained, "soft_targets": cached}


def stores_from_params(cfg: Params, main: Path | None, pool: Path | None) -> dict[str, Path]:
    stores: dict[str, Path] = {}
    if cfg.ensemble.include_main:
        if main is None:
            raise KdflowError("ensemble.include_main is true: pass the main teacher's store with --main")
        stores["main"] = main
    for name in cfg.ensemble.teachers:
        if pool is None:
            raise KdflowError("ensemble.teachers is not empty: pass the pool directory with --pool")
        stores[name] = pool / name
    return stores


def combine(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    """The stage as DVC runs it: the main store and the pool directory, named by the params."""
    stores = stores_from_params(cfg, inputs.get("main"), inputs.get("pool"))
    return run(cfg, {"data": inputs["data"], **stores} if inputs.get("data") else stores, outputs)
