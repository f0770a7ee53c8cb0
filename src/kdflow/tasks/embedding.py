"""Sentence-encoder distillation: the store holds the teacher's embeddings, the student regresses them."""

from __future__ import annotations

from kdflow.errors import KdflowError
from kdflow.lit.distill import EmbeddingDistillModule
from kdflow.tasks.base import Task


class Embedding(Task):
    name = "embedding"
    target = "embedding"
    # a sentence encoder is judged by cosine to the teacher and a linear probe, not by class accuracy
    stages = {"evaluate": "kdflow.evaluation.embedding:run"}

    def store_meta(self, spec: dict) -> dict:
        return {"target": "embedding", "embedding_dim": spec["embedding_dim"]}

    def check_signal(self, signal: dict, spec: dict, info: dict) -> None:
        width = signal.get("embedding_dim")
        if signal.get("target") != "embedding" or width != spec["embedding_dim"]:
            raise KdflowError(f"the student outputs {spec['embedding_dim']}-d embeddings but the teacher signal is "
                              + (f"{width}-d embeddings" if width else "logits (not a sentence encoder's)")
                              + ": set student.model.kwargs.dim to the teacher's width")

    def distill_module(self) -> type:
        return EmbeddingDistillModule

    def has_labels(self) -> bool:
        return False
