"""DKD, multi-teacher averaging, FitNets hints and attention transfer against numbers derived by hand.

Every expected value below is written out from its definition (see the comments), not computed by
the code under test.
"""

import math

import pytest
import torch

from kdflow.errors import KdflowError
from kdflow.losses import COMBINERS, FEATURE_LOSSES, LOSSES
from kdflow.losses.attention import attention_loss, attention_map
from kdflow.losses.dkd import dkd_loss, dkd_terms
from kdflow.losses.ensemble import ensemble_logits
from kdflow.losses.hint import hint_loss
from kdflow.losses.kd import kd_term
from tests.helpers import tiny_cfg

LN2, LN3 = math.log(2.0), math.log(3.0)
# Teacher logits [ln2, 0, 0] -> p_t = [1/2, 1/4, 1/4]; student logits 0 -> p_s = [1/3, 1/3, 1/3].
T_LOGITS = torch.tensor([[LN2, 0.0, 0.0]])
S_LOGITS = torch.zeros(1, 3)
# target 0: binary b_t = [1/2, 1/2], b_s = [1/3, 2/3] -> TCKD = 1/2·ln(3/2) + 1/2·ln(3/4); non-target
# p̂_t = p̂_s = [1/2, 1/2] -> NCKD = 0
TCKD_0 = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)  # 0.0588915
# target 1: b_t = [1/4, 3/4], b_s = [1/3, 2/3] -> TCKD = 1/4·ln(3/4) + 3/4·ln(9/8);
# p̂_t over classes {0, 2} = [2/3, 1/3], p̂_s = [1/2, 1/2] -> NCKD = 2/3·ln(4/3) + 1/3·ln(2/3)
TCKD_1 = 0.25 * math.log(0.75) + 0.75 * math.log(9 / 8)  # 0.0164168
NCKD_1 = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)  # 0.0566330
KL_TS = 0.5 * math.log(1.5) + 2 * 0.25 * math.log(0.75)  # KL(p_t ‖ p_s) = 0.0588915


def test_reference_numbers():
    assert TCKD_0 == pytest.approx(0.0588915, abs=1e-6)
    assert TCKD_1 == pytest.approx(0.0164168, abs=1e-6)
    assert NCKD_1 == pytest.approx(0.0566330, abs=1e-6)
    # the paper's identity KD = TCKD + (1 - p_t[target])·NCKD, with p_t[1] = 1/4
    assert TCKD_1 + 0.75 * NCKD_1 == pytest.approx(KL_TS, abs=1e-6)


def test_dkd_terms_by_hand():
    tckd, nckd = dkd_terms(S_LOGITS, T_LOGITS, torch.tensor([0]), 1.0)
    assert tckd.item() == pytest.approx(TCKD_0, abs=1e-6) and nckd.item() == pytest.approx(0.0, abs=1e-6)
    tckd, nckd = dkd_terms(S_LOGITS, T_LOGITS, torch.tensor([1]), 1.0)
    assert tckd.item() == pytest.approx(TCKD_1, abs=1e-6)
    assert nckd.item() == pytest.approx(NCKD_1, abs=1e-6)


def test_dkd_recovers_kd_with_the_papers_weights():
    tckd, nckd = dkd_terms(S_LOGITS, T_LOGITS, torch.tensor([1]), 1.0)
    assert (tckd + 0.75 * nckd).item() == pytest.approx(kd_term(S_LOGITS, T_LOGITS, 1.0).item(), abs=1e-6)


def test_dkd_t_squared():
    # at T = 2 the teacher [2·ln2, 0, 0] softens to the same [1/2, 1/4, 1/4]: both terms are T² = 4 times
    tckd, nckd = dkd_terms(S_LOGITS, 2 * T_LOGITS, torch.tensor([1]), 2.0)
    assert tckd.item() == pytest.approx(4 * TCKD_1, abs=1e-5)
    assert nckd.item() == pytest.approx(4 * NCKD_1, abs=1e-5)


def test_dkd_loss_mixes_ce_and_weighted_terms():
    # alpha 0.5, tckd 1, nckd 8, label 1: 0.5·CE + 0.5·(TCKD + 8·NCKD); CE of uniform logits = ln 3
    got = dkd_loss(S_LOGITS, T_LOGITS, torch.tensor([1]), 1.0, 0.5, 1.0, 8.0).item()
    assert got == pytest.approx(0.5 * LN3 + 0.5 * (TCKD_1 + 8 * NCKD_1), abs=1e-6)


def test_dkd_transfer_sample_uses_teacher_top_class_and_no_ce():
    # unlabeled: the teacher's argmax (class 0) is the target; CE is 0 -> 0.5·TCKD_0 (NCKD_0 = 0)
    got = dkd_loss(S_LOGITS, T_LOGITS, torch.tensor([-1]), 1.0, 0.5, 1.0, 8.0).item()
    assert got == pytest.approx(0.5 * TCKD_0, abs=1e-6)


def test_dkd_is_finite_for_a_certain_teacher():
    s = torch.tensor([[30.0, -30.0, 0.0]], requires_grad=True)
    loss = dkd_loss(s, torch.tensor([[80.0, -80.0, -80.0]]), torch.tensor([0]), 1.0, 0.9, 1.0, 8.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


# Teacher A [ln3, 0] -> [3/4, 1/4]; teacher B [0, 0] -> [1/2, 1/2].
TWO = torch.tensor([[[LN3, 0.0], [0.0, 0.0]]])  # (B=1, K=2, C=2)


def test_ensemble_averages_probabilities_not_logits():
    p = ensemble_logits(TWO, 1.0).softmax(1)[0]
    assert p.tolist() == pytest.approx([5 / 8, 3 / 8], abs=1e-6)  # (3/4 + 1/2)/2, (1/4 + 1/2)/2
    logit_mean = math.sqrt(3) / (1 + math.sqrt(3))  # softmax([ln3/2, 0]) = 0.6340: what logit averaging gives
    assert abs(p[0].item() - logit_mean) > 5e-3


def test_ensemble_weights_and_temperature():
    p = ensemble_logits(TWO, 1.0, torch.tensor([3.0, 1.0])).softmax(1)[0]
    assert p.tolist() == pytest.approx([11 / 16, 5 / 16], abs=1e-6)  # 3/4·3/4 + 1/4·1/2 = 11/16
    # at T = 2, A = [2·ln3, 0] softens to [3/4, 1/4]: the T-softened average is again [5/8, 3/8]
    z = ensemble_logits(torch.tensor([[[2 * LN3, 0.0], [0.0, 0.0]]]), 2.0)
    assert (z / 2).softmax(1)[0].tolist() == pytest.approx([5 / 8, 3 / 8], abs=1e-6)


def test_kd_on_ensemble_targets():
    # KL([5/8, 3/8] ‖ [1/2, 1/2]) = 5/8·ln(5/4) + 3/8·ln(3/4) = 0.0315828
    got = kd_term(torch.zeros(1, 2), ensemble_logits(TWO, 1.0), 1.0).item()
    assert got == pytest.approx(5 / 8 * math.log(1.25) + 3 / 8 * math.log(0.75), abs=1e-6)


def test_single_teacher_logits_pass_through():
    z = torch.randn(4, 5)
    assert ensemble_logits(z, 3.0) is z


def test_hint_mse_and_cosine_by_hand():
    s, t = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0, 0.0], [3.0, 5.0]])
    assert hint_loss(s, t, "mse").item() == pytest.approx((0 + 4 + 0 + 1) / 4)
    # cos((1,2),(1,0)) = 1/√5; cos((3,4),(3,5)) = 29/(5·√34)
    expect = ((1 - 1 / math.sqrt(5)) + (1 - 29 / (5 * math.sqrt(34)))) / 2
    assert hint_loss(s, t, "cosine").item() == pytest.approx(expect, abs=1e-6)


def test_hint_pools_a_longer_map_to_the_shorter():
    s = torch.tensor([[[1.0, 3.0, 5.0, 7.0]]])  # pooled in pairs -> [2, 6]
    assert hint_loss(s, torch.tensor([[[2.0, 6.0]]])).item() == pytest.approx(0.0)
    assert hint_loss(s, torch.tensor([[[2.0, 4.0]]])).item() == pytest.approx(4 / 2)  # (0² + 2²)/2


def test_attention_map_and_loss_by_hand():
    s = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # channel mean of A² = [1, 0] -> normalized [1, 0]
    t = torch.tensor([[[0.0, 2.0], [0.0, 0.0]]])  # [0, 2] -> [0, 1]
    assert attention_map(s).tolist() == [[1.0, 0.0]]
    assert attention_loss(s, t).item() == pytest.approx((1 + 1) / 2)
    # a 3-channel teacher of ones: map [1, 1]/√2; ((1 - 1/√2)² + (1/√2)²)/2 = 0.2928932
    ones = torch.ones(1, 3, 2)
    assert attention_loss(s, ones).item() == pytest.approx(((1 - 2 ** -0.5) ** 2 + 0.5) / 2, abs=1e-6)


def test_attention_power_and_sign():
    s = torch.tensor([[[-2.0, 1.0]]])  # p = 1: |A| = [2, 1] -> [2, 1]/√5; p = 2: [4, 1]/√17
    assert attention_map(s, 1.0)[0].tolist() == pytest.approx([2 / math.sqrt(5), 1 / math.sqrt(5)])
    assert attention_map(s, 2.0)[0].tolist() == pytest.approx([4 / math.sqrt(17), 1 / math.sqrt(17)])


def test_mean_logits_combiner_by_hand():
    # weights 3:1 over logits [ln3, 0] and [0, 0] -> [3/4·ln3, 0]
    z = COMBINERS["mean_logits"].fn(TWO, 1.0, torch.tensor([3.0, 1.0]))
    assert z[0].tolist() == pytest.approx([0.75 * LN3, 0.0], abs=1e-6)


def test_registries_list_every_method():
    assert set(LOSSES) == {"kd", "dkd", "embedding_mse", "embedding_cosine"}
    assert set(FEATURE_LOSSES) == {"hint", "attention", "attention_probs"}
    assert set(COMBINERS) == {"mean_prob", "mean_logits"}


def test_named_terms_sum_to_the_loss_by_hand():
    # kd, alpha 0.5, T 1, label 1: ce = 0.5·ln3, kd = 0.5·KL(p_t ‖ uniform)
    terms = LOSSES["kd"].fn(S_LOGITS, T_LOGITS, torch.tensor([1]), 1.0, 0.5)
    assert set(terms) == {"ce", "kd"}
    assert terms["ce"].item() == pytest.approx(0.5 * LN3, abs=1e-6)
    assert terms["kd"].item() == pytest.approx(0.5 * KL_TS, abs=1e-6)
    dkd_terms_ = LOSSES["dkd"].fn(S_LOGITS, T_LOGITS, torch.tensor([1]), 1.0, 0.5, LOSSES["dkd"].bind({}))
    assert {k: round(v.item(), 6) for k, v in dkd_terms_.items()} == pytest.approx(
        {"ce": 0.5 * LN3, "tckd": 0.5 * TCKD_1, "nckd": 0.5 * 8 * NCKD_1}, abs=1e-6)


def test_unknown_names_and_bad_params_fail_when_params_load():
    allowed = "dkd, embedding_cosine, embedding_mse, kd"
    with pytest.raises(KdflowError, match=f"unknown distill.loss 'fitnet'; allowed: {allowed}"):
        tiny_cfg(distill__loss="fitnet")
    with pytest.raises(KdflowError, match="distill.loss 'dkd' params: nckdd: Extra inputs.*valid keys: tckd, nckd"):
        tiny_cfg(distill__loss="dkd", distill__loss_params={"nckdd": 2})
    with pytest.raises(KdflowError, match="distill.loss 'dkd' params: nckd: Input should be greater"):
        tiny_cfg(distill__loss="dkd", distill__loss_params={"nckd": -1})
    with pytest.raises(KdflowError,
                       match="unknown distill.features method 'crd'; allowed: attention, attention_probs, hint"):
        tiny_cfg(distill__features=[{"method": "crd", "student": "a", "teacher": "b"}])
    with pytest.raises(KdflowError, match="'attention' params: p: Input should be greater than 0"):
        tiny_cfg(distill__features=[{"method": "attention", "student": "a", "teacher": "b", "params": {"p": 0}}])
    with pytest.raises(KdflowError, match="unknown ensemble.combine 'vote'"):
        tiny_cfg(ensemble__combine="vote")
    cfg = tiny_cfg(distill__loss="dkd", distill__loss_params={"nckd": 2})
    assert cfg.distill.loss_params == {"tckd": 1.0, "nckd": 2.0}  # defaults filled at load
