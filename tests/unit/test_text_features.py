"""Hidden-state and attention transfer between text transformers, through `distill.features`: taps inside the
Hugging Face model, a token-id probe with padding, a learned projection, padding left out. Tiny random BERTs."""

import pytest
import torch
from torch import nn

from kdflow.config import FeaturePair, ModelSource
from kdflow.errors import KdflowError
from kdflow.lit.features import FeatureDistiller, LastDimLinear
from kdflow.losses.attention_probs import attention_probs_loss, check_shapes
from kdflow.losses.hint import hint_loss
from kdflow.models import build_model
from kdflow.models.imported import import_model
from tests.support.text_fixtures import write_bert

TEXT = {"vocab_size": 37, "pad_id": 0, "sep_id": 3, "pair": False}
HIDDEN = "model.bert.encoder.layer.{}"
ATTN = "model.bert.encoder.layer.{}.attention.self"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A random 2-layer BERT classifier of width 32 (4 heads would also do: attention is head-averaged)."""
    hf = write_bert(tmp_path_factory.mktemp("hf") / "bert", num_labels=2, hidden=32, layers=2)
    info = {"num_classes": 2, "classes": ["0", "1"], "input_shape": [16], "modality": "text",
            "tokenizer": {**TEXT, "cls_id": 2, "path": str(hf)}, "normalization": {"mean": [0.0], "std": [1.0]}}
    model, _, _ = import_model(ModelSource(uri=str(hf)), info, "teacher")
    return model.eval().requires_grad_(False)


def student(hidden=16, heads=2, seed=0):
    torch.manual_seed(seed)
    return build_model({"name": "text-bert", "kwargs": {"layers": 2, "hidden": hidden, "heads": heads, "dropout": 0.0},
                        "input_shape": [16], "num_classes": 2, "mean": [0.0], "std": [1.0], "modality": "text",
                        "text": TEXT})


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(5, 37, (8, 12), generator=g)
    x[:, 0], x[4:, 7:] = 2, 0  # [CLS] first; half the rows padded after 7 tokens
    return x


def _fit(s, teacher, fd, opt, key: str, steps: int = 15) -> list[float]:
    """`steps` optimizer steps on one feature term; its loss after each step."""
    x, losses = batch(), []
    for _ in range(steps):
        s(x)
        with torch.no_grad():
            teacher(x)
        loss = fd(x != 0)[key]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_hidden_states_project_through_a_linear_and_move_toward_the_teachers(teacher):
    s = student()
    pairs = [FeaturePair(student=HIDDEN.format(1), teacher=HIDDEN.format(1))]
    fd = FeatureDistiller(s, teacher, pairs, [16], TEXT)
    assert fd.shapes == [([16, 16], [16, 32])]  # (tokens, width): the probe ran on token ids at max length
    assert isinstance(fd.adapters[0], LastDimLinear) and fd.adapters[0].weight.shape == (32, 16)
    assert fd.token_axes == [[0]]  # the axis that followed the probe's two lengths
    opt = torch.optim.Adam([*s.parameters(), *fd.parameters()], lr=1e-2)
    losses = _fit(s, teacher, fd, opt, "hint_0")
    assert losses[-1] < 0.3 * losses[0], losses[::5]
    fd.remove()


def test_attention_distributions_are_head_averaged_and_learned(teacher):
    s = student(hidden=16, heads=4)  # 4 heads against the teacher's 2
    pairs = [FeaturePair(method="attention_probs", student=ATTN.format(0), teacher=ATTN.format(1))]
    fd = FeatureDistiller(s, teacher, pairs, [16], TEXT)
    assert fd.shapes == [([4, 16, 16], [2, 16, 16])] and isinstance(fd.adapters[0], nn.Identity)
    assert fd.token_axes == [[1, 2]]
    opt = torch.optim.Adam(s.parameters(), lr=1e-2)
    losses = _fit(s, teacher, fd, opt, "attention_probs_0")
    assert 0 < losses[-1] < 0.5 * losses[0], losses[::5]


def test_padding_is_left_out_of_both_losses():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    s, t = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    m = mask[:, :, None].float()
    t2 = t.clone()
    t2[1, 2:] += 100.0  # garbage on the padding positions only
    assert hint_loss(s, t2, mask=m) == pytest.approx(hint_loss(s, t, mask=m).item())
    assert hint_loss(s, t2) > 100 * hint_loss(s, t, mask=m)
    # the masked mean is over real tokens: equals the plain mean over them
    real = torch.cat([(s[0] - t[0]).pow(2).flatten(), (s[1, :2] - t[1, :2]).pow(2).flatten()]).mean()
    assert hint_loss(s, t, mask=m).item() == pytest.approx(real.item(), rel=1e-5)
    ps, pt = torch.softmax(torch.randn(2, 3, 4, 4), -1), torch.softmax(torch.randn(2, 2, 4, 4), -1)
    pt2 = pt.clone()
    pt2[1, :, 2:] = torch.softmax(torch.randn(2, 2, 4), -1)  # other rows for the padding queries
    qm = mask[:, None, :, None].float()
    assert attention_probs_loss(ps, pt2, mask=qm) == pytest.approx(attention_probs_loss(ps, pt, mask=qm).item())
    assert attention_probs_loss(pt, pt, mask=qm).item() == pytest.approx(0.0, abs=1e-6)


def test_wrong_paths_and_wrong_modules_are_clear_errors(teacher):
    with pytest.raises(KdflowError) as err:
        FeatureDistiller(student(), teacher, [FeaturePair(student=HIDDEN.format(1), teacher="bert.encoder.layer.1")],
                         [16], TEXT)
    msg = str(err.value)
    assert "teacher module 'bert.encoder.layer.1' not found" in msg and "closest: model.bert.encoder.layer.1" in msg
    with pytest.raises(KdflowError, match="student module 'model.bert.encoder.layer.7' not found"):
        FeatureDistiller(student(), teacher, [FeaturePair(student=HIDDEN.format(7), teacher=HIDDEN.format(1))],
                         [16], TEXT)
    with pytest.raises(KdflowError, match="'model.bert.encoder.layer.0' gives no tensor as output element 1"):
        FeatureDistiller(student(), teacher, [FeaturePair(method="attention_probs", student=HIDDEN.format(0),
                                                          teacher=HIDDEN.format(0))], [16], TEXT)
    assert check_shapes([4, 16, 16], [2, 16, 16]) is None
    assert "over the same tokens" in check_shapes([4, 16, 16], [2, 15, 15])

