"""Dynamic int8 quantization and ONNX export with an onnxruntime parity check."""

import numpy as np
import pytest
import torch

from kdflow.compress import compare, export_onnx, onnx_predict, onnx_session, quantize_int8, state_bytes
from kdflow.models import build_model

SPEC = {"input_shape": [1, 40], "num_classes": 10, "mean": [0.5], "std": [2.0]}


def test_int8_quantizes_linear_layers_and_shrinks_an_mlp():
    model = build_model({**SPEC, "name": "mlp", "kwargs": {"hidden": [128, 128]}}).eval()
    q = quantize_int8(model)
    quantized = [m for m in q.modules() if "quantized" in type(m).__module__ and type(m).__name__ == "Linear"]
    assert len(quantized) == 3  # two hidden layers and the head
    assert state_bytes(q) < 0.4 * state_bytes(model)  # int8 weights: ~4× smaller
    x = torch.randn(64, 1, 40)
    with torch.no_grad():
        assert (q(x) - model(x)).abs().max() < 0.1
    assert isinstance(next(model.net.features.children()), torch.nn.Flatten)  # the original is untouched


def test_onnx_matches_pytorch_with_dynamic_batch(tmp_path):
    model = build_model({**SPEC, "name": "cnn1d", "kwargs": {"channels": [8, 8, 8]}}).eval()
    path = export_onnx(model, tmp_path / "m.onnx", [1, 40])
    sess = onnx_session(path)
    for n in (1, 7):
        x = np.random.default_rng(n).normal(size=(n, 1, 40)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert np.abs(onnx_predict(sess, x) - ref).max() < 1e-4  # normalization is inside the graph


def test_compare_reports_every_form():
    model = build_model({**SPEC, "name": "mlp", "kwargs": {"hidden": [32]}}).eval()
    x, y = torch.randn(50, 1, 40), torch.randint(0, 10, (50,))
    m = compare(model, [1, 40], x, y, repeats=5)
    for form in ("fp32", "int8", "onnx"):
        for k in ("accuracy", "size_bytes", "latency_p50_ms"):
            assert f"{form}.{k}" in m
    assert m["onnx.max_abs_dlogit"] < 1e-4 and m["int8.max_abs_dlogit"] < 0.1
    assert m["onnx.accuracy"] == pytest.approx(m["fp32.accuracy"])
    assert set(compare(model, [1, 40], x, y, 5, int8=False, onnx=False)) == {"fp32.accuracy", "fp32.size_bytes",
                                                                          "fp32.latency_p50_ms"}
