"""Forward hooks capture exactly the named modules; adapters come from a shape probe; clear errors."""

import pytest
import torch
from torch import nn

from kdflow.config import FeaturePair
from kdflow.errors import KdflowError
from kdflow.lit.features import FeatureDistiller, FeatureTaps, FlattenLinear, make_adapter, module_names
from kdflow.models import build_model

SPEC = {"input_shape": [1, 40], "num_classes": 10, "mean": [0.0], "std": [1.0]}


def cnn(channels, **kw):
    return build_model({**SPEC, "name": "cnn1d", "kwargs": {"channels": channels, **kw}})


def test_taps_capture_the_named_modules_and_nothing_else():
    model = cnn([8, 8, 8])
    taps = FeatureTaps(model, ["features.2", "head"], "student")
    x = torch.randn(3, 1, 40)
    logits = model(x)
    assert set(taps.out) == {"features.2", "head"}
    manual = model.net.features[:3](x)  # Conv, ReLU, Conv: the output of features.2
    assert torch.equal(taps.out["features.2"], manual)
    assert torch.equal(taps.out["head"], logits)
    taps.remove()
    model(x)
    assert taps.out == {} and not model.net.features[2]._forward_hooks  # the model is left as it was


def test_unknown_path_lists_the_available_names():
    model = cnn([8, 8, 8])
    with pytest.raises(KdflowError) as err:
        FeatureTaps(model, ["layer3"], "teacher")
    msg = str(err.value)
    assert "teacher module 'layer3' not found" in msg and "relative to the model's .net" in msg
    for name in ("features", "features.0", "features.2", "features.5", "head"):
        assert name in msg
    assert module_names(model)[:2] == ["features", "features.0"]
    with pytest.raises(KdflowError, match="not found"):
        FeatureTaps(model, ["net.features.2"], "student")  # paths are relative to .net, not the wrapper


@pytest.mark.parametrize("s,t,kind,params", [
    ([8, 10], [8, 10], nn.Identity, 0),
    ([8, 10], [32, 10], nn.Conv1d, 8 * 32),        # channels differ: 1×1 conv, no bias
    ([8, 10], [32, 5], nn.Conv1d, 8 * 32),         # channels and length differ: conv, then the loss pools
    ([4, 6, 6], [16, 3, 3], nn.Conv2d, 4 * 16),
    ([17, 32], [17, 64], nn.Linear, 32 * 64 + 64),  # tokens: only the last dim differs
    ([8, 10], [8, 5], nn.Linear, 10 * 5 + 5),
    ([4, 6, 6], [4, 3, 3], nn.Identity, 0),         # same channels, other spatial size: pooled by the loss
    ([64], [128], FlattenLinear, 64 * 128 + 128),
    ([8, 5], [40], FlattenLinear, 40 * 40 + 40),
])
def test_adapter_kind_and_shapes(s, t, kind, params):
    a = make_adapter(s, t)
    assert isinstance(a, kind)
    assert sum(p.numel() for p in a.parameters()) == params
    out = list(a(torch.randn(2, *s)).shape[1:])
    if kind is nn.Identity:
        assert out == s  # the loss pools a spatial mismatch
    elif kind in (nn.Conv1d, nn.Conv2d):
        assert out == [t[0], *s[1:]]  # channels matched; the loss pools the rest
    else:
        assert out == t


def test_distiller_probes_shapes_without_touching_batchnorm_and_trains_adapters():
    student = build_model({**SPEC, "name": "resnet", "kwargs": {"width": 4, "depth": 1, "stages": 2}})
    teacher = cnn([32, 32, 32]).eval()
    before = student.net.features[1].running_mean.clone()
    pairs = [FeaturePair(student="features.3", teacher="features.4", weight=2.0),
             FeaturePair(method="attention", student="features.4", teacher="features.2")]
    fd = FeatureDistiller(student.train(), teacher, pairs, [1, 40])
    assert torch.equal(student.net.features[1].running_mean, before)  # probe ran in eval mode
    assert student.training  # and the mode was restored
    assert fd.shapes[0] == ([4, 40], [32, 5]) and fd.shapes[1] == ([8, 20], [32, 10])
    assert isinstance(fd.adapters[0], nn.Conv1d) and fd.adapters[0].weight.shape == (32, 4, 1)
    assert isinstance(fd.adapters[1], nn.Identity)  # attention maps are channel-free
    student(torch.randn(4, 1, 40))
    with torch.no_grad():
        teacher(torch.randn(4, 1, 40))
    terms = fd()
    assert list(terms) == ["hint_0", "attention_1"]  # each pair is its own named, weighted term
    loss = sum(terms.values())
    loss.backward()
    assert loss.item() > 0 and fd.adapters[0].weight.grad is not None
    assert fd.s_taps.out == {} and fd.t_taps.out == {}  # captures are released every step


def test_attention_refuses_vector_features():
    with pytest.raises(KdflowError, match="attention needs conv feature maps"):
        FeatureDistiller(cnn([8, 8, 8]), cnn([8, 8, 8]), [FeaturePair(method="attention", student="head",
                                                                       teacher="head")], [1, 40])


def test_loss_before_any_forward_is_a_clear_error():
    fd = FeatureDistiller(cnn([8, 8, 8]), cnn([8, 8, 8]), [FeaturePair(student="features.1", teacher="features.1")],
                          [1, 40])
    with pytest.raises(KdflowError, match="captured nothing"):
        fd()
