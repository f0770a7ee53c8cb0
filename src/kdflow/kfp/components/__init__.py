"""KFP components, laid out as kubeflow/pipelines-components: one directory per component holding
`component.py` (a thin call into kdflow.stages), `metadata.yaml`, a generated `README.md` and the
compiled `component.yaml`. `kdflow pipeline components --check` (and the unit tests) verify that
every component imports and compiles, that the generated files are current, and that each
component module imports only the stdlib, kfp and what the kdflow image declares.

`STAGE` names the kdflow stage (kdflow.stages.<module>) each component runs; None for pipeline
plumbing (params, data version key, exit handler).
"""

from __future__ import annotations

import importlib

STAGE: dict[str, str | None] = {
    "resolve_params": None, "data_version": None, "prepare": "prepare", "train_teacher": "train_teacher",
    "launch_training_job": "train_teacher", "select_best": "select_best", "soft_targets": "soft_targets",
    "merge_soft_targets": "merge_soft_targets", "train_baseline": "train_baseline", "distill": "distill",
    "finetune": "finetune", "evaluate": "evaluate", "gate": "register", "register": "register",
    "record_status": None,
}
NAMES = tuple(STAGE)


def load(name: str):
    """The component object (a kfp PythonComponent) of `name`."""
    if name not in STAGE:
        raise KeyError(f"no kdflow component {name!r} (known: {', '.join(NAMES)})")
    return getattr(importlib.import_module(f"kdflow.kfp.components.{name}.component"), name)
