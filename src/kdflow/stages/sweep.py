"""`kdflow sweep`: grid or random search over temperature, α and method weights on cached soft targets.

The teacher is never re-run: the store is read once and every trial joins it by sample id (only
feature terms, which need live teacher activations, run the teacher). Each trial distills the
student for `sweep.epochs` (default: `distill.train.epochs`) and is scored by its best accuracy on
the **validation** split — the test split is never read. Writes:

- `trials.csv`: one row per trial (the searched values, val_acc, epochs, seconds);
- `best.yaml`: the winning values (`overrides:` keys under `distill`), for `distill.from_sweep`;
- `sweep.json`: best val_acc, best values, the `-S` overrides, totals (DVC metrics friendly).

    kdflow sweep --params params.yaml --data data/prepared --soft-targets soft_targets/teacher --out sweep
"""

from __future__ import annotations

import copy
import csv
import itertools
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from kdflow.config import Params, Range, validate
from kdflow.errors import KdflowError

BEST = "best.yaml"


def set_path(node: Any, dotted: str, value: Any, root: str = "distill") -> None:
    """Set `a.b.0.c` inside nested dicts/lists; list positions are integers. Unknown dict keys are created
    (validation then names them); a list index out of range is an error here."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        where, last = ".".join([root, *parts[:i + 1]]), i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise KdflowError(f"'{where}': no such list entry (the list has {len(node)})")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise KdflowError(f"'{where}': '{parts[i - 1]}' is not a section")


def with_values(cfg: Params, values: dict[str, Any], epochs: int | None = None) -> Params:
    """`cfg` with `values` (keys under `distill`) applied, re-validated so a bad key fails by name."""
    raw = cfg.model_dump(mode="json")
    for key, value in values.items():
        set_path(raw["distill"], key, value)
    if epochs is not None:
        raw["distill"]["train"]["epochs"] = epochs
    raw["distill"]["from_sweep"] = None
    return validate(raw, "sweep values")


def apply_best(cfg: Params, path: str | Path) -> Params:
    """Apply a sweep's `best.yaml` to `cfg` (used by the distill stage for `distill.from_sweep`)."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST
    if not path.is_file():
        raise KdflowError(f"distill.from_sweep: {path} not found (run `kdflow sweep` first)")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc.get("overrides"), dict):
        raise KdflowError(f"distill.from_sweep: {path} has no 'overrides' mapping")
    return with_values(cfg, doc["overrides"])


def points(sweep) -> list[dict[str, float]]:
    """The trial values: the full grid, or `trials` random draws (lists: uniform choice; ranges: (log-)uniform)."""
    keys = list(sweep.space)
    if sweep.strategy == "grid":
        ranged = [k for k in keys if isinstance(sweep.space[k], Range)]
        if ranged:
            raise KdflowError(f"sweep.space: {ranged} are ranges; a grid needs lists (or strategy: random)")
        grid = [dict(zip(keys, combo)) for combo in itertools.product(*(sweep.space[k] for k in keys))]
        if len(grid) > sweep.trials:
            raise KdflowError(f"sweep grid has {len(grid)} points, more than sweep.trials={sweep.trials}; "
                              "raise sweep.trials or use strategy: random")
        return grid
    rng = random.Random(sweep.seed)
    out = []
    for _ in range(sweep.trials):
        point = {}
        for k in keys:
            space = sweep.space[k]
            if isinstance(space, Range):
                if space.log:
                    v = math.exp(rng.uniform(math.log(space.low), math.log(space.high)))
                else:
                    v = rng.uniform(space.low, space.high)
                point[k] = round(v, 4)
            else:
                point[k] = rng.choice(space)
        out.append(point)
    return out


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    from kdflow import tracking
    from kdflow.data.module import KDDataModule
    from kdflow.data.reader import for_student, load_info
    from kdflow.io import atomic_dir, write_json
    from kdflow.lit.fit import fit
    from kdflow.stages.common import initial_model, need, seed_all
    from kdflow.stages.distill import build_module, offline_table

    data, store = for_student(need(inputs, "data", "sweep")), need(inputs, "soft_targets", "sweep")
    out = need(outputs, "sweep", "sweep")
    if cfg.soft_targets.mode != "offline":
        raise KdflowError("kdflow sweep reuses cached soft targets: it needs soft_targets.mode: offline "
                          "(an augmented online teacher would be re-run for every trial)")
    info = load_info(data)
    init, spec = initial_model(cfg.student, info, "student")
    table, manifest = offline_table(Path(data), store, info, cfg.distill.use_transfer)
    todo = points(cfg.sweep)
    keys = list(cfg.sweep.space)
    rows: list[dict] = []
    t_all = time.perf_counter()
    with tracking.stage_run(cfg, "sweep", cfg.sweep.model_dump(mode="json"), info["hash"]), \
            tempfile.TemporaryDirectory(prefix="kdflow-sweep-") as scratch:
        for i, values in enumerate(todo):
            tcfg = with_values(cfg, values, cfg.sweep.epochs)
            d = tcfg.distill
            seed_all(tcfg.seed)
            start = copy.deepcopy(init) if cfg.student.init_from else None  # else fresh per trial seed
            module, _ = build_module(tcfg, inputs, info, spec, table=table, manifest=manifest, student=start)
            dm = KDDataModule(data, d.train.batch_size, tcfg.seed, d.use_transfer, d.train.num_workers,
                              labeled_fraction=d.labeled_fraction)
            t0 = time.perf_counter()
            hist = fit(module, dm, d.train, Path(scratch) / f"trial-{i}", f"sweep:{tcfg.digest()}:{info['hash']}")
            row = {"trial": i, **values, "val_acc": hist["best_val_acc"], "epochs": hist["epochs_run"],
                   "seconds": round(time.perf_counter() - t0, 2)}
            rows.append(row)
            print(f"kdflow sweep: trial {i + 1}/{len(todo)} {values} val_acc={row['val_acc']:.4f} "
                  f"({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
        best = max(rows, key=lambda r: (r["val_acc"] if r["val_acc"] is not None else -1.0))
        best_values = {k: best[k] for k in keys}
        overrides = [f"distill.{k}={v}" for k, v in best_values.items()]
        summary = {"trials": len(rows), "strategy": cfg.sweep.strategy, "best": best_values,
                   "best_val_acc": best["val_acc"], "best_trial": best["trial"], "overrides": overrides,
                   "seconds": round(time.perf_counter() - t_all, 2), "split": "val"}
        tracking.log_metrics({"best_val_acc": best["val_acc"] or 0.0, "trials": len(rows)})
        with atomic_dir(out) as tmp:
            with open(tmp / "trials.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
            (tmp / BEST).write_text(
                f"# kdflow sweep: best of {len(rows)} trials on the validation split "
                f"(val_acc {best['val_acc']:.4f}); keys are under `distill`\n"
                + yaml.safe_dump({"val_acc": best["val_acc"], "overrides": best_values}, sort_keys=False))
            write_json(tmp / "sweep.json", summary)
    print(trials_table(rows), file=sys.stderr)
    print("use:  " + " ".join(f"-S {o}" for o in overrides) + f"   or  -S distill.from_sweep={out / BEST}",
          file=sys.stderr)
    return {**summary, "rows": rows}


def trials_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    cells = [[f"{r[c]:.4f}" if c == "val_acc" and r[c] is not None else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
