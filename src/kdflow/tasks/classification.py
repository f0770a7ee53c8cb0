"""Classification: class logits from vectors, signals, images or token ids (the shared stage bodies)."""

from __future__ import annotations

from kdflow.lit.distill import DistillModule
from kdflow.tasks.base import Task


class Classification(Task):
    name = "classification"

    def distill_module(self) -> type:
        return DistillModule
