"""Compression after distillation: dynamic int8 quantization and ONNX export with a parity check.

- int8: `torch.ao.quantization.quantize_dynamic` on the Linear layers (weights stored int8,
  activations quantized on the fly; CPU). Conv layers stay fp32 — dynamic quantization does not
  cover them — so a conv-heavy student shrinks less than an MLP.
- ONNX: the TorchScript-based exporter (`dynamo=False`: no onnxscript dependency), dynamic batch
  axis, normalization inside the graph (raw inputs in, logits out), checked against PyTorch with
  onnxruntime: the largest |Δlogit| over the evaluation inputs is reported.

The evaluate stage calls `compare` to put fp32, int8 and ONNX side by side (accuracy, size,
batch-1 latency); `python -m kdflow.compress --model DIR --out DIR` writes the artifacts.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdflow.errors import KdflowError
from kdflow.evaluation.perf import timings


def quantize_int8(model: nn.Module) -> nn.Module:
    """A dynamically int8-quantized copy of `model` (Linear layers), in eval mode."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def state_bytes(model: nn.Module) -> int:
    """Size of the serialized state_dict (what a `model.pt` of this model would take)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(model.state_dict(), buf)
    return buf.tell()


def export_onnx(model: nn.Module, path: Path, input_shape: list[int], opset: int = 17) -> Path:
    path = Path(path)
    example = torch.zeros(2, *input_shape)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(copy.deepcopy(model).eval(), (example,), str(path), dynamo=False,
                              input_names=["x"], output_names=["logits"], opset_version=opset,
                              dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as exc:
        raise KdflowError(f"ONNX export failed: {str(exc).splitlines()[0][:300]}") from None
    return path


def quantize_onnx_int8(fp32: Path, out: Path, calib: np.ndarray, batch: int = 64) -> Path:
    """Static int8 (QDQ, per-channel weights) of an exported ONNX model with onnxruntime, activation
    ranges calibrated on `calib` in `batch`-sized pieces: conv and matmul run in int8 kernels, unlike
    torch's dynamic quantization, which leaves convs fp32 (and was slower than fp32 for conv students)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": calib[i:i + batch].astype(np.float32)} for i in range(0, len(calib), batch)])

        def get_next(self):
            return next(self.it, None)

    pre = Path(out).with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimization; quantize the export as is
        pre = Path(fp32)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return Path(out)


def onnx_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_predict(session, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    outs = [session.run(None, {"x": x[i:i + batch_size].astype(np.float32)})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def p50_ms(fn, x, repeats: int) -> float:
    return float(np.percentile(timings(fn, x, repeats), 50) * 1e3)


@torch.inference_mode()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)])


def compare(model: nn.Module, input_shape: list[int], x: torch.Tensor, y: torch.Tensor, repeats: int,
            int8: bool = True, onnx: bool = True, opset: int = 17,
            calib: torch.Tensor | None = None) -> dict[str, float]:
    """fp32 vs int8 (torch dynamic; onnxruntime static QDQ calibrated on `calib`, default the first 256
    of x) vs ONNX on (x, y): accuracy, size_bytes, latency_p50_ms (batch 1), max_abs_dlogit."""
    model = model.eval()
    ref = _predict(model, x)
    one = x[:1]
    out = {"fp32.accuracy": float((ref.argmax(1) == y).float().mean()), "fp32.size_bytes": state_bytes(model),
           "fp32.latency_p50_ms": p50_ms(lambda v: _predict(model, v), one, repeats)}
    if int8:
        q = quantize_int8(model)
        lq = _predict(q, x)
        out |= {"int8.accuracy": float((lq.argmax(1) == y).float().mean()), "int8.size_bytes": state_bytes(q),
                "int8.latency_p50_ms": p50_ms(lambda v: _predict(q, v), one, repeats),
                "int8.max_abs_dlogit": float((lq - ref).abs().max()),
                "int8.agreement": float((lq.argmax(1) == ref.argmax(1)).float().mean())}
    if onnx:
        with tempfile.TemporaryDirectory(prefix="kdflow-onnx-") as tmp:
            path = export_onnx(model, Path(tmp) / "model.onnx", input_shape, opset)
            forms = {"onnx": path}
            if int8:
                c = (x[:256] if calib is None else calib).numpy()
                forms["onnx_int8"] = quantize_onnx_int8(path, Path(tmp) / "model-int8.onnx", c)
            one_np, many = one.numpy(), x[:256].numpy()
            for name, f in forms.items():
                sess = onnx_session(f)
                lo = torch.from_numpy(onnx_predict(sess, x.numpy()))
                out |= {f"{name}.accuracy": float((lo.argmax(1) == y).float().mean()),
                        f"{name}.size_bytes": f.stat().st_size,
                        f"{name}.latency_p50_ms": p50_ms(lambda v, s=sess: s.run(None, {"x": v}), one_np, repeats),
                        f"{name}.batch_ms_per_sample": p50_ms(lambda v, s=sess: s.run(None, {"x": v}), many,
                                                              max(repeats // 10, 5)) / len(many),
                        f"{name}.max_abs_dlogit": float((lo - ref).abs().max())}
    return out


def int8_verdict(res: dict[str, float], budget: float) -> tuple[bool, str]:
    """(worth it, in words): the onnxruntime int8 model against fp32 onnx — faster per sample in a batch
    and within `budget` accuracy points (fraction) of fp32, or not chosen, saying why."""
    if "onnx_int8.accuracy" not in res:
        return False, "int8 not measured"
    drop = res["onnx.accuracy"] - res["onnx_int8.accuracy"]
    speed = res["onnx.batch_ms_per_sample"] / max(res["onnx_int8.batch_ms_per_sample"], 1e-12)
    words = f"int8 (onnxruntime static QDQ) is {speed:.2f}× fp32 onnx speed, accuracy {-drop * 100:+.2f} points"
    if speed <= 1.0:
        return False, words + ": not faster, so int8 is not used"
    if drop > budget:
        return False, words + f": loses more than the budget ({budget * 100:.2f} points), so int8 is not used"
    return True, words + ": within budget and faster"


def main(argv: list[str] | None = None) -> int:
    """Write `model.onnx` (+ parity) and `model-int8.pt` (quantized state_dict) for a kdflow model dir."""
    p = argparse.ArgumentParser(prog="python -m kdflow.compress", description="int8 + ONNX artifacts of a model")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--opset", type=int, default=17)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    from kdflow.io import atomic_dir, write_json
    from kdflow.models import load_model

    try:
        model, spec = load_model(args.model)
        if spec.get("modality") == "text":  # token ids in, tokenizer beside the .onnx; no int8 variant
            from kdflow.models.text_onnx import export_text

            with atomic_dir(args.out) as tmp:
                doc = {"source": str(args.model), "opset": args.opset,
                       **export_text(model, spec, args.model, tmp, args.opset)}
                write_json(tmp / "compress.json", doc)
            print(json.dumps(doc, indent=2))
            return 0
        x = torch.randn(64, *spec["input_shape"]) * model.std + model.mean
        with atomic_dir(args.out) as tmp:
            export_onnx(model, tmp / "model.onnx", spec["input_shape"], args.opset)
            parity = float(np.abs(onnx_predict(onnx_session(tmp / "model.onnx"), x.numpy())
                                  - _predict(model, x).numpy()).max())
            q = quantize_int8(model)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.save(q.state_dict(), tmp / "model-int8.pt")
            doc = {"source": str(args.model), "onnx_max_abs_dlogit": parity, "opset": args.opset,
                   "fp32_bytes": state_bytes(model), "int8_bytes": (tmp / "model-int8.pt").stat().st_size,
                   "onnx_bytes": (tmp / "model.onnx").stat().st_size,
                   "int8_note": "dynamic quantization of Linear layers; rebuild with kdflow.compress.quantize_int8"}
            write_json(tmp / "compress.json", doc)
    except KdflowError as exc:
        print(f"kdflow compress: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
