"""Stage `select_best`: keep the candidate model with the best validation accuracy.

Candidates are model directories (sweep trials of distill, or teacher candidates); the score
is `training.best_val_acc` from each model.json — the validation split, never test, so the
selection does not leak into the final evaluation. Ties keep the earlier candidate.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from kdflow.config import Params
from kdflow.errors import KdflowError
from kdflow.io import atomic_dir, need, read_json, write_json
from kdflow.models import SPEC

SELECTION = "selection.json"


def score(model_dir: Path) -> float:
    acc = read_json(model_dir / SPEC, "model spec").get("training", {}).get("best_val_acc")
    return float(acc) if acc is not None and math.isfinite(acc) else -math.inf


def run(cfg: Params, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict:
    """Every input is a candidate (key = its name); writes the winner to outputs['model']."""
    out = need(outputs, "model", "select_best")
    if not inputs:
        raise KdflowError("select_best needs at least one candidate model")
    names = list(inputs)
    scores = [score(Path(inputs[n])) for n in names]
    best = max(range(len(names)), key=lambda i: (scores[i], -i))
    if scores[best] == -math.inf:
        raise KdflowError(f"no candidate has a validation accuracy (training.best_val_acc) among {names}")
    table = [{"candidate": n, "val_acc": s if s != -math.inf else None, "path": str(inputs[n])}
             for n, s in zip(names, scores)]
    with atomic_dir(out) as tmp:
        for f in Path(inputs[names[best]]).iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        write_json(tmp / SELECTION, {"selected": names[best], "metric": "training.best_val_acc",
                                     "candidates": table})
    return {"selected": names[best], "index": best, "val_acc": scores[best], "candidates": table}
