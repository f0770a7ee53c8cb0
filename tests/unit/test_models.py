import pytest
import torch

from kdflow.errors import KdflowError
from kdflow.models import build_model, count_params, load_model, save_model


def spec(name, shape=(1, 40), **kwargs):
    c = shape[0]
    return {"name": name, "kwargs": kwargs, "input_shape": list(shape), "num_classes": 10,
            "mean": [0.5] * c, "std": [2.0] * c}


@pytest.mark.parametrize("name, shape, kwargs", [
    ("mlp", (1, 28, 28), {"hidden": [32]}), ("cnn1d", (1, 40), {}), ("cnn2d", (1, 8, 8), {}),
    ("resnet", (1, 40), {"width": 8}), ("resnet", (3, 16, 16), {"width": 8, "depth": 1}),
    ("transformer", (1, 40), {"dim": 16}), ("transformer", (3, 16, 16), {"dim": 16}),
    ("import:torch.nn:Flatten", (10,), {}),
])
def test_registry_builds_and_runs(name, shape, kwargs):
    m = build_model(spec(name, shape, **kwargs))
    out = m(torch.randn(2, *shape))
    assert out.shape == (2, 10)


def test_cnn1d_default_is_the_papers_5210_parameter_convbase():
    assert count_params(build_model(spec("cnn1d"))) == 5210


def test_save_load_round_trip_weights_only(tmp_path):
    m = build_model(spec("resnet", width=8)).eval()
    save_model(m, tmp_path / "m", spec("resnet", width=8), role="teacher")
    loaded, doc = load_model(tmp_path / "m")
    x = torch.randn(4, 1, 40)
    assert torch.equal(m(x), loaded(x))
    assert doc["params"] == count_params(m) and doc["size_bytes"] > 0 and doc["role"] == "teacher"
    # what is on disk is a plain state_dict: it loads with the safe unpickler and holds only tensors
    state = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    save_model(build_model(spec("cnn1d")), tmp_path / "m", spec("cnn1d"))
    (tmp_path / "m" / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(KdflowError, match="corrupt or incompatible checkpoint .*model.pt"):
        load_model(tmp_path / "m")


def test_unknown_and_bad_models():
    with pytest.raises(KdflowError, match="unknown model 'vgg'; allowed: mlp, cnn1d"):
        build_model(spec("vgg"))
    with pytest.raises(KdflowError, match="bad kwargs"):
        build_model(spec("mlp", hidden_sizes=[3]))
    with pytest.raises(KdflowError, match="cannot import nope.Model"):
        build_model(spec("import:nope:Model"))


def test_torchvision_is_optional_and_said_clearly():
    try:
        import torchvision  # noqa: F401

        build_model(spec("torchvision:resnet18", (3, 32, 32)))
    except Exception:
        with pytest.raises(KdflowError, match="torchvision:resnet18"):
            build_model(spec("torchvision:resnet18", (3, 32, 32)))
