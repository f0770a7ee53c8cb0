"""kdflow's training step runs its own optimization (manual_backward, step, schedule step) for speed; it must train
exactly as Lightning's automatic loop would."""

import lightning as L
import numpy as np
import torch

from kdflow.config import Train
from kdflow.data.reader import TensorBatches, batches
from kdflow.data.samplers import MAX_GROUP, EpochBatches, group_size, loader
from kdflow.lit.fit import fit
from kdflow.lit.modules import ClassifierModule

N, B = 128 * 12, 128


class _Data(L.LightningDataModule):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.part = {"x": rng.random((N, 16), np.float32), "y": rng.integers(0, 10, N), "id": np.arange(N)}

    def train_dataloader(self):
        return loader([self.part], B, shuffle=True)

    def val_dataloader(self):
        return loader([{k: v[:256] for k, v in self.part.items()}], 256, shuffle=False)


class _Automatic(ClassifierModule):
    """The same module left to Lightning's automatic optimization: the reference."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = True

    def training_step(self, batch, batch_idx):
        return self.batch_loss(batch)


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def _trained(cls, tmp_path, name: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = _net()
    t = Train(epochs=3, batch_size=B, lr=1e-2, scheduler="onecycle", progress_bar=False)
    module = cls(model, t)
    fit(module, _Data(), t, tmp_path / name, f"test:{name}")
    assert module.trainer.global_step == 3 * (N // B)  # one optimizer step per batch, as Lightning counts them
    return [p.detach().clone() for p in model.parameters()]


def test_manual_optimization_trains_as_lightnings_automatic_loop(tmp_path):
    ours = _trained(ClassifierModule, tmp_path, "manual")
    reference = _trained(_Automatic, tmp_path, "automatic")
    torch.manual_seed(0)
    start = [p.detach().clone() for p in _net().parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(ours, start))  # it trained
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the LR schedule stepped alike, every step


class _Grouped(_Data):
    """The same batches served `group` per loader item (the in-memory training loader's grouping)."""

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def train_dataloader(self):
        ds = TensorBatches([self.part])
        return batches(ds, EpochBatches(len(ds), B, True, 0, drop_last=True, group=self.group))


def test_grouped_batches_train_as_one_batch_per_item(tmp_path):
    """Several batches per loader item (one optimizer step each, in order) train bit for bit as one batch per
    item: the same steps, schedule and per-epoch draws. 12 batches in groups of 5 leave a short last group."""
    runs = {}
    for group in (1, 5):
        torch.manual_seed(0)
        model = _net()
        t = Train(epochs=3, batch_size=B, lr=1e-2, scheduler="onecycle", progress_bar=False,
                  augment={"enabled": True, "noise": 0.1})
        module = ClassifierModule(model, t)
        fit(module, _Grouped(group), t, tmp_path / f"g{group}", f"test:g{group}")
        assert module.trainer.global_step == 3 * (N // B)
        assert module.trainer.num_training_batches == -(-(N // B) // group)
        runs[group] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(runs[1], runs[5]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_group_size_bounds():
    assert group_size(128, 784 * 4) == MAX_GROUP  # MNIST vectors: 0.4 MB a batch
    assert group_size(128, 3 * 32 * 32 * 4) == 2  # CIFAR-sized images: 1.5 MB a batch
    assert group_size(64, 3 * 224 * 224 * 4) == 1  # large images gain nothing, keep memory flat
    assert group_size(128, 784 * 4, world_size=2) == 1  # DDP arms its gradient sync once per module call
