"""LightningModules: a classifier on hard labels (teacher, baseline, finetune) and the distiller."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from kdflow.config import Augment, Distill, Train
from kdflow.data.augment import augment
from kdflow.losses import get_loss


class ClassifierModule(L.LightningModule):
    def __init__(self, model: nn.Module, train: Train, seed: int = 0):
        super().__init__()
        self.model, self.train_cfg, self.seed = model, train, seed
        self.aug: Augment = train.augment
        self._gen = torch.Generator()

    def forward(self, x):
        return self.model(x)

    def on_train_epoch_start(self) -> None:
        # Reseed per epoch: a run resumed at epoch k draws what an uninterrupted run drew.
        s = self.seed * 1_000_003 + self.current_epoch
        torch.manual_seed(s)
        self._gen.manual_seed(s)

    def objective(self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y)

    def training_step(self, batch, batch_idx):
        x, y, ids = batch
        x = augment(x, self.aug, self._gen)
        logits = self.model(x)
        loss = self.objective(logits, x, y, ids)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self.model(x).float()
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), prog_bar=True, batch_size=len(y),
                 sync_dist=True)

    def configure_optimizers(self):
        t = self.train_cfg
        if t.optimizer == "sgd":
            opt = torch.optim.SGD(self.parameters(), lr=t.lr, momentum=0.9, weight_decay=t.weight_decay,
                                  nesterov=True)
        else:
            opt = torch.optim.AdamW(self.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        if t.scheduler == "none":
            return opt
        steps = self.trainer.estimated_stepping_batches
        if t.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=max(int(steps), 1))
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(steps), 1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class DistillModule(ClassifierModule):
    """Student trained on hard labels and the teacher's logits.

    offline: logits come from the cached store, joined by sample id (`table[ids]`).
    online: the frozen teacher runs on the same (possibly augmented) batch.
    """

    def __init__(self, model: nn.Module, cfg: Distill, seed: int = 0, table: torch.Tensor | None = None,
                 teacher: nn.Module | None = None):
        super().__init__(model, cfg.train, seed)
        self.cfg, self.loss_fn = cfg, get_loss(cfg.loss)
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        if table is not None:
            self.register_buffer("table", table, persistent=False)
        else:
            self.table = None

    def teacher_logits(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.teacher is not None:
            with torch.inference_mode():
                return self.teacher(x).float().clone()
        return self.table[ids]

    def objective(self, logits, x, y, ids):
        return self.loss_fn(logits, self.teacher_logits(x, ids), y, self.cfg)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher stays in eval mode (BatchNorm stats, dropout off)
        return self
