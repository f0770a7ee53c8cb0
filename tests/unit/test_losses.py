"""KD loss numerics against values derived by hand (see each comment), not by the code under test."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdflow.losses.kd import kd_loss, kd_term

LN3 = math.log(3.0)
# p_teacher = [3/4, 1/4], p_student = [1/2, 1/2]:
# KL(t‖s) = 3/4·ln(3/2) + 1/4·ln(1/2) = 0.1308120
KL_TS = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
# KL(s‖t) = 1/2·ln(2/3) + 1/2·ln(2) = 0.1438410 — what a swapped argument order would give
KL_ST = 0.5 * math.log(2 / 3) + 0.5 * math.log(2.0)


def test_reference_values_are_what_we_think():
    assert KL_TS == pytest.approx(0.1308120, abs=1e-6)
    assert KL_ST == pytest.approx(0.1438410, abs=1e-6)


def test_kd_term_direction_is_teacher_to_student():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]])
    assert kd_term(s, t, 1.0).item() == pytest.approx(KL_TS, abs=1e-6)
    assert kd_term(s, t, 1.0).item() != pytest.approx(KL_ST, abs=1e-4)


def test_t_squared_scaling():
    # At T=2 the teacher [2·ln3, 0] softens to the same [3/4, 1/4]; the term is T² = 4 times KL.
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[2 * LN3, 0.0]])
    assert kd_term(s, t, 2.0).item() == pytest.approx(4 * KL_TS, abs=1e-5)


def test_batchmean_divides_by_batch_size():
    s = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    t = torch.tensor([[LN3, 0.0], [1.0, 2.0]])  # second sample: identical logits → 0
    y = torch.tensor([0, 1])
    assert kd_loss(s, t, y, 1.0, alpha=1.0).item() == pytest.approx(KL_TS / 2, abs=1e-6)


def test_alpha_zero_is_cross_entropy():
    s = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
    y = torch.tensor([0, 1])
    ce = (math.log(2) + (math.log(math.exp(2) + math.exp(-1)) + 1)) / 2  # −log softmax by hand
    assert kd_loss(s, torch.randn(2, 2), y, 4.0, alpha=0.0).item() == pytest.approx(ce, abs=1e-5)
    assert kd_loss(s, torch.randn(2, 2), y, 4.0, alpha=0.0).item() == pytest.approx(F.cross_entropy(s, y).item())


def test_identical_logits_give_zero_kd():
    z = torch.randn(5, 10)
    assert kd_term(z, z.clone(), 3.0).abs().max().item() < 1e-6


def test_mixed_loss_and_transfer_samples_take_kd_only():
    s, t = torch.tensor([[0.0, 0.0]] * 2), torch.tensor([[LN3, 0.0]] * 2)
    # labeled: 0.5·ln2 + 0.5·KL; transfer (y=-1): 0.5·KL only; batchmean over both
    expect = ((0.5 * math.log(2) + 0.5 * KL_TS) + 0.5 * KL_TS) / 2
    assert kd_loss(s, t, torch.tensor([0, -1]), 1.0, alpha=0.5).item() == pytest.approx(expect, abs=1e-6)
    # the transfer sample's "label" is never read: any negative value gives the same loss
    assert kd_loss(s, t, torch.tensor([0, -7]), 1.0, 0.5).item() == pytest.approx(expect, abs=1e-6)

