"""Distillation LightningModules: the student learns from hard labels and the teacher's signal.

Kept apart from `kdflow.lit.modules` (the plain classifier) so the stages that train on labels alone
(teacher, baseline, fine-tune) do not import the loss registry: editing a loss reruns only distill and
what follows it under `dvc repro`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdflow.config import Distill
from kdflow.errors import KdflowError
from kdflow.lit.features import FeatureDistiller
from kdflow.lit.modules import ClassifierModule
from kdflow.losses import COMBINERS, LOSSES


class DistillModule(ClassifierModule):
    """Student trained on hard labels and the teacher's logits (+ optional feature terms).

    offline: logits come from the cached store, joined by sample id (`table[ids]`); a multi-teacher
    table (N, K, C) is combined per batch as the weighted average of tempered probabilities.
    online: the frozen teacher runs on the same (possibly augmented) batch the student sees.
    Feature terms (`cfg.features`) need the teacher on every batch; with a table the output term
    still comes from the cache and the teacher forward serves the features only.
    """

    def __init__(self, model: nn.Module, cfg: Distill, seed: int = 0, table: torch.Tensor | None = None,
                 teacher: nn.Module | None = None, teacher_weights: list[float] | None = None,
                 input_shape: list[int] | None = None, combine: str = "mean_prob", text: dict | None = None,
                 combine_params: dict | None = None):
        super().__init__(model, cfg.train, seed)
        self.cfg = cfg
        entry = LOSSES.get_entry(cfg.loss)
        self.loss_fn, self.loss_params = entry.fn, entry.bind(cfg.loss_params)
        combiner = COMBINERS.get_entry(combine)
        self.combine, self.combine_params = combiner.fn, combiner.bind(combine_params)  # ensemble.combine_params
        if table is None and teacher is None:
            raise KdflowError("distillation needs cached soft targets (offline) or a teacher model (online)")
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        # A plain attribute, not a buffer: DDP would re-broadcast every buffer on every forward.
        self.table = table
        k = table.shape[1] if table is not None and table.dim() == 3 else 1
        if teacher_weights is not None and len(teacher_weights) != k:
            raise KdflowError(f"ensemble.weights has {len(teacher_weights)} entries but the soft targets hold "
                              f"{k} teacher(s)")
        w = torch.tensor(teacher_weights, dtype=torch.float32) if teacher_weights is not None else None
        self.register_buffer("teacher_weights", w, persistent=False)
        self.features = None
        if cfg.features:
            if teacher is None:
                raise KdflowError("distill.features need the teacher model: its features are computed online")
            if input_shape is None:
                raise KdflowError("distill.features need the input shape for the adapter shape probe")
            self.features = FeatureDistiller(model, self.teacher, cfg.features, input_shape, text)
        self.pad_id = int(text["pad_id"]) if text else None  # text batches: feature losses skip padding

    def on_fit_start(self) -> None:
        if self.table is not None:
            self.table = self.table.to(self.device)

    def teacher_logits(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        online = None
        if self.teacher is not None and (self.table is None or self.features is not None):
            with torch.no_grad():  # not inference_mode: the outputs take part in the student's autograd graph
                online = self.teacher(x).float()
        t = self.table[ids] if self.table is not None else online
        return self.combine(t, self.cfg.temperature, self.teacher_weights, self.combine_params) if t.dim() == 3 else t

    def objective(self, logits, x, y, ids):
        d = self.cfg
        terms = self.loss_fn(logits, self.teacher_logits(x, ids), y, d.temperature, d.alpha, self.loss_params)
        if self.features is not None:
            terms |= self.features(None if self.pad_id is None else x != self.pad_id)
        return terms

    def on_fit_end(self) -> None:
        if self.features is not None:
            self.features.remove()  # the saved student carries no hooks

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher stays in eval mode (BatchNorm stats, dropout off)
        return self


class EmbeddingDistillModule(DistillModule):
    """A sentence encoder distilled on the teacher's embeddings (`task: embedding`). Validation reports the loss
    and, as `val_acc` (what checkpointing and early stopping watch), the mean cosine to the teacher's val
    embeddings."""

    def validation_step(self, batch, batch_idx):
        x, y, ids = batch
        student = self.model(x).float()
        teacher = self.teacher_logits(x, ids)
        terms = self.loss_fn(student, teacher, y, self.cfg.temperature, self.cfg.alpha, self.loss_params)
        self.log("val_loss", sum(terms.values()), prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log("val_acc", F.cosine_similarity(student, teacher.float(), dim=1).mean(), prog_bar=True,
                 batch_size=len(y), sync_dist=True)
