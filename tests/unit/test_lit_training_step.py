"""kdflow's training step runs its own optimization (manual_backward, step, schedule step) for speed; it must train
exactly as Lightning's automatic loop would."""

import lightning as L
import numpy as np
import torch

from kdflow.config import Train
from kdflow.data.module import loader
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
