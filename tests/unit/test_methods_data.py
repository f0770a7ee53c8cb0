"""The labeled:unlabeled batch mix (distill.labeled_fraction) and mixed precision pass-through."""

import torch

from kdflow.data.module import KDDataModule
from kdflow.data.samplers import MixedBatches
from tests.helpers import tiny_cfg


def test_mixed_batches_fix_the_labeled_share_and_oversample():
    s = MixedBatches(n_labeled=10, n_transfer=90, batch_size=10, labeled_fraction=0.3, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 10  # one pass over 100 samples' worth of batches
    for b in batches:
        assert len(b) == 10 and int((b < 10).sum()) == 3
    lab = torch.cat([b[b < 10] for b in batches])
    assert torch.bincount(lab, minlength=10).tolist() == [3] * 10  # 30 draws = 3 full passes over 10 labeled
    unl = torch.cat([b[b >= 10] for b in batches])
    assert len(unl.unique()) == len(unl) == 70  # transfer samples are not repeated within an epoch
    again = list(MixedBatches(10, 90, 10, 0.3, seed=0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))  # deterministic for (seed, epoch)
    s.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(batches, list(s)))


def test_extreme_fractions_keep_both_streams():
    assert MixedBatches(10, 90, 8, 1.0, 0).k == 7 and MixedBatches(10, 90, 8, 0.01, 0).k == 1


def test_datamodule_uses_the_mix_only_with_transfer(prepared):
    dm = KDDataModule(prepared, 20, with_transfer=True, labeled_fraction=0.25)
    x, y, ids = next(iter(dm.train_dataloader()))
    assert len(y) == 20 and int((y >= 0).sum()) == 5
    plain = KDDataModule(prepared, 20, with_transfer=False, labeled_fraction=0.25)
    assert (next(iter(plain.train_dataloader()))[1] >= 0).all()
    default = KDDataModule(prepared, 20, with_transfer=True)  # unchanged behaviour without the option
    assert default.train_dataloader().sampler.batches == (400 + 300) // 20  # (served several per loader item)


def test_labeled_fraction_config():
    assert tiny_cfg().distill.labeled_fraction is None
    assert tiny_cfg(distill__labeled_fraction=0.5).distill.labeled_fraction == 0.5
