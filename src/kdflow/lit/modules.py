"""LightningModules: a classifier on hard labels (teacher, baseline, finetune) and the distiller."""

from __future__ import annotations

import itertools
import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from kdflow.config import Augment, Train
from kdflow.data.augment import augment


class ClassifierModule(L.LightningModule):
    def __init__(self, model: nn.Module, train: Train, seed: int = 0):
        super().__init__()
        self.model, self.train_cfg, self.seed = model, train, seed
        self.aug: Augment = train.augment
        self._gen = torch.Generator()
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self._rows: int | None = None
        # Manual optimization: the same zero_grad → backward → step → schedule step as Lightning's automatic
        # loop, without its per-step closure and the hooks around it (~0.3 ms a step, 5 % of the 800-800 MLP's
        # CPU step at batch 128; benchmarks/training_speed.py). kdflow has one optimizer, no gradient
        # accumulation or clipping, so nothing the automatic loop adds is lost; manual_backward keeps AMP's
        # loss scaling and DDP's gradient sync.
        self.automatic_optimization = False

    def forward(self, x):
        return self.model(x)

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets `_current_fx_name` ~46 times per training step, and nn.Module.__setattr__ runs its
        # Parameter/Module/buffer isinstance checks every time: ~0.5 ms of a small model's step on CPU.
        # A plain value replacing a plain attribute needs none of those checks.
        if isinstance(value, str | int | float | None) and name in self.__dict__:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def on_train_epoch_start(self) -> None:
        # Reseed per epoch: a run resumed at epoch k draws what an uninterrupted run drew.
        s = self.seed * 1_000_003 + self.current_epoch
        torch.manual_seed(s)
        self._gen.manual_seed(s)
        self._sums, self._count = {}, 0

    def objective(self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named, weighted loss terms; the training loss is their sum."""
        return {"ce": F.cross_entropy(logits.float(), y)}

    def on_train_start(self) -> None:
        # Rows per optimizer step when the loader serves several batches per item (kdflow.data.module.group_size)
        s = self._grouped_sampler()
        self._rows = s.batch_size if s is not None else None

    def _grouped_sampler(self):
        s = getattr(getattr(self.trainer, "train_dataloader", None), "sampler", None)
        return s if getattr(s, "group", 1) > 1 else None

    def _optimizer_steps(self) -> int:
        """The fit's optimizer steps: Lightning counts loader items, and a grouped item holds several batches."""
        tr = self.trainer
        steps = int(tr.estimated_stepping_batches)  # also sets up the train loader when not yet done
        s = self._grouped_sampler()
        if s is None:
            return steps
        total = tr.max_epochs * s.batches if tr.max_epochs is not None and tr.max_epochs >= 0 else math.inf
        return int(min(total, tr.max_steps) if tr.max_steps >= 0 else total)

    def training_step(self, batch, batch_idx):
        opt, sched = self.optimizers(), self.lr_schedulers()
        parts = zip(*(t.split(self._rows) for t in batch)) if self._rows else (batch,)
        tr = self.trainer
        left = max(tr.max_steps - tr.global_step, 1) if tr.max_steps >= 0 else None  # max_steps holds within an item
        for part in itertools.islice(parts, left):  # one optimizer step per batch of the item, in order
            loss = self.batch_loss(part)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            if sched is not None:
                sched.step()
        return loss

    def batch_loss(self, batch) -> torch.Tensor:
        """The training loss of one batch; its terms are summed for the epoch's log."""
        x, y, ids = batch
        x = augment(x, self.aug, self._gen)
        logits = self.model(x)
        terms = self.objective(logits, x, y, ids)
        loss = sum(terms.values())
        # Summed here, logged once per epoch: a per-step `self.log` costs ~0.5 ms of Lightning bookkeeping
        # (result collection, device moves), 5-10 % of a small model's CPU step.
        n = len(y)
        for name, value in terms.items():
            acc = self._sums.get(name)
            self._sums[name] = value.detach() * n if acc is None else acc + value.detach() * n
        self._count += n
        return loss

    def on_train_epoch_end(self) -> None:
        # A run resumed from a checkpoint taken after validation re-enters the end of that epoch with no steps.
        if self._count:
            means = {name: total / self._count for name, total in self._sums.items()}
            self.log("train_loss", sum(means.values()), prog_bar=True, sync_dist=True)
            if len(means) > 1 or "ce" not in means:  # a lone CE term is train_loss already
                for name, value in means.items():
                    self.log(f"train_{name}", value, sync_dist=True)

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
                                  nesterov=True, fused=True)
        else:
            # fused: one kernel over all parameters; the default per-tensor loop is about half of a small
            # MLP's CPU training step
            opt = torch.optim.AdamW(self.parameters(), lr=t.lr, weight_decay=t.weight_decay, fused=True)
        if t.scheduler == "none":
            return opt
        steps = self._optimizer_steps()
        if t.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=max(int(steps), 1))
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(steps), 1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
