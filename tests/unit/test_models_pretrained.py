"""timm, torchvision and Hugging Face image classifiers as teachers, from weights built here (no downloads)."""

import pytest
import torch

from kdflow.config import ModelSource
from kdflow.errors import KdflowError
from kdflow.io import sha256_file
from kdflow.models import load_model
from kdflow.models.imported import import_model, save_imported

ANIMALS = ["cat", "dog", "fox"]


def info(shape=(3, 32, 32), classes=("0", "1", "2")):
    return {"input_shape": list(shape), "num_classes": len(classes), "classes": list(classes),
            "normalization": {"mean": [0.4] * shape[0], "std": [0.2] * shape[0]}}


def reload_same(model, spec, loaded, tmp_path):
    """The written kdflow model dir rebuilds the network from its spec and gives the same logits."""
    save_imported(model, spec, loaded, tmp_path / "out", role="teacher")
    back, _ = load_model(tmp_path / "out")
    x = torch.rand(3, *spec["input_shape"])
    with torch.no_grad():
        assert torch.allclose(model(x), back(x), atol=1e-5)


def test_timm_with_local_weights_takes_normalization_and_fixed_size_from_timm(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", num_classes=3).eval()
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    src = ModelSource(uri="timm:test_resnet", weights=str(tmp_path / "w.safetensors"))
    model, spec, loaded = import_model(src, info(), "teacher")
    assert spec["mean"] == [0.5, 0.5, 0.5] and spec["name"] == "timm:test_resnet"  # timm's config, not the data's
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - 0.5) / 0.5), atol=1e-5)
    reload_same(model, spec, loaded, tmp_path)
    vit = timm.create_model("test_vit", num_classes=3)
    torch.save(vit.state_dict(), tmp_path / "vit.pt")
    with pytest.raises(KdflowError, match="input shape mismatch: .* expects inputs of shape 3×160×160 .* has 3×32×32"):
        import_model(ModelSource(uri="timm:test_vit", weights=str(tmp_path / "vit.pt")), info(), "teacher")


def test_torchvision_with_local_weights(tmp_path):
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    net = tvm.get_model("squeezenet1_1", weights=None, num_classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "w.pth")
    src = ModelSource(uri="torchvision:squeezenet1_1", weights=str(tmp_path / "w.pth"),
                      mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    model, spec, loaded = import_model(src, info(), "teacher")
    assert spec["source"]["sha256"]["w.pth"] == sha256_file(tmp_path / "w.pth") and spec["std"][0] == 0.229
    reload_same(model, spec, loaded, tmp_path)
    with pytest.raises(KdflowError, match=r"shape mismatch \(2\): classifier.1.bias \(3,\) vs model \(2,\)"):
        import_model(src, info(classes=("a", "b")), "teacher")


def _hf_vit(tmp_path, labels=ANIMALS):
    transformers = pytest.importorskip("transformers")
    conf = transformers.ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32, num_labels=len(labels),
                                  id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)})
    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(conf).eval()
    hf.save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25],
                                   size={"height": 16, "width": 16}).save_pretrained(tmp_path / "vit")
    return hf, tmp_path / "vit"


def test_hugging_face_image_classifier_directory(tmp_path):
    hf, d = _hf_vit(tmp_path)
    model, spec, loaded = import_model(ModelSource(uri=str(d)), info((3, 16, 16), ANIMALS), "teacher")
    assert spec["mean"] == [0.5] * 3 and spec["std"] == [0.25] * 3 and spec["name"] == "hf-image:"
    assert "model.safetensors" in spec["source"]["sha256"] and spec["source"]["scheme"] == "hf"
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), hf(pixel_values=(x - 0.5) / 0.25).logits, atol=1e-5)
    reload_same(model, spec, loaded, tmp_path)
    with pytest.raises(KdflowError, match="input shape mismatch: .* expects inputs of shape 3×16×16"):
        import_model(ModelSource(uri=f"hf:{d}"), info((3, 32, 32), ANIMALS), "teacher")
    with pytest.raises(KdflowError, match="class names mismatch: .*#0: model 'cat' vs data 'ant'"):
        import_model(ModelSource(uri=f"hf:{d}"), info((3, 16, 16), ("ant", "dog", "fox")), "teacher")
    with pytest.raises(KdflowError, match="class count mismatch: .* outputs 3 classes but the dataset has 2"):
        import_model(ModelSource(uri=f"hf:{d}"), info((3, 16, 16), ("cat", "dog")), "teacher")
