"""What a task is: the hooks stages ask instead of testing `task == ...` themselves.

A task owns what differs between model kinds: what the soft-target store holds (`target`), which checks a
teacher signal must pass, which LightningModule distills, and any stage it runs with a function of its own
(`stages`: stage name -> "module:function", same signature as the stage's `run`). Stages it does not name
run the shared classifier-family body. `kdflow.stages.registry.run_stage` does the dispatch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import ClassVar

from kdflow.errors import KdflowError


def load_ref(ref: str) -> Callable:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class Task:
    name: ClassVar[str]
    target: ClassVar[str] = "logits"  # what soft_targets stores: logits | embedding | token_topk
    stages: ClassVar[dict[str, str]] = {}  # stage name -> "module:function" run instead of the shared body
    without: ClassVar[frozenset[str]] = frozenset()  # stages this task cannot run

    def stage(self, name: str) -> Callable | None:
        """The task's own function for stage `name`, None for the shared body; refuses a stage it lacks."""
        if name in self.without:
            raise KdflowError(f"task {self.name} has no stage {name.replace('_', '-')}")
        ref = self.stages.get(name)
        return load_ref(ref) if ref else None

    # --- classifier-family hooks (shared stage bodies call these) ---------------------------------------
    def store_meta(self, spec: dict) -> dict:
        """Extra soft-target manifest fields for a teacher of this task."""
        return {}

    def check_signal(self, signal: dict, spec: dict, info: dict) -> None:
        """The teacher signal (a store's manifest, or what an online teacher's spec would store) fits the
        student: its kind and class count."""
        if signal.get("target", "logits") != self.target:
            raise KdflowError(f"soft targets hold {signal.get('target')} but task {self.name} distills from "
                              f"{self.target}: regenerate them with this task's teacher")
        if signal["num_classes"] != info["num_classes"]:
            raise KdflowError(f"soft targets have {signal['num_classes']} classes but the dataset has "
                              f"{info['num_classes']}: teacher/student class-count mismatch")

    def distill_module(self) -> type:
        """The LightningModule class the shared distill body trains."""
        raise KdflowError(f"task {self.name} has no shared distill module")

    def has_labels(self) -> bool:
        """Whether a no-KD baseline can be trained on hard labels."""
        return True

    def __repr__(self) -> str:
        return f"<task {self.name}>"
