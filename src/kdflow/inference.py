"""The one inference engine: soft targets, evaluate and serving run models through `engine(...)`.

Backends (all under `torch.inference_mode`, raw inputs in, float32 logits out):
- `torch`: an eval copy with Conv+BatchNorm pairs folded (`fuse_conv_bn_eval`) and, for 4-D inputs,
  `channels_last` weights and inputs (1.7x eager for small conv nets on 2 CPU cores).
- `onnx`: the model exported (`kdflow.compress.export_onnx`) and run by onnxruntime (2.4x eager on
  the same conv net; often slower than torch for tiny MLPs, hence the measurement).
- `eager`: the model as it is. Used when neither applies: inputs that are not float tensors (text
  models), exported/ONNX teachers (already a program), or a model the others cannot take.

`auto` picks between torch and onnx by a short measurement (interleaved rounds, median), taken when a
stage saves the model and recorded in `model.json` under `inference`, so later loads need not
measure; `params.inference.backend` overrides it. The winner depends on the batch size (the 800-800
MLP: onnxruntime 1.4x torch at batch 1, torch 2x onnxruntime at batch 256), so it is measured at a
request's size (1) and at a bulk size (256, soft targets / evaluate), recorded per size (`by_batch`),
and an engine whose two choices differ runs each call on the backend chosen for the nearer size.
The measurement has a time budget: its rounds shrink for a slow model (a ResNet under load).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdflow.errors import KdflowError

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnx", "eager")
MEASURE_BATCHES = (1, 256)  # one request; a soft-target / evaluate batch
MEASURE_BUDGET_S = 3.0      # timed calls of `choose`, all batch sizes (exports and warm-up not counted)


def is_tensor_model(model: nn.Module, spec: dict) -> bool:
    """Float-tensor inputs and a Python network: what the torch/onnx backends can take."""
    from kdflow.models.programs import ProgramNet

    return (spec.get("modality") != "text" and str(spec.get("input_dtype", "float32")).startswith("float")
            and not isinstance(getattr(model, "net", None), ProgramNet) and "input_shape" in spec)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a Conv in an `nn.Sequential` or as `convN`/`bnN`
    attribute pairs (the built-in archs) into the conv; in place on an eval-mode model."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    bns = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    for mod in list(model.modules()):
        if isinstance(mod, nn.Sequential):
            names = list(mod._modules)
            for a, b in zip(names, names[1:], strict=False):
                if isinstance(mod._modules[a], convs) and isinstance(mod._modules[b], bns):
                    mod._modules[a] = fuse_conv_bn_eval(mod._modules[a], mod._modules[b])
                    mod._modules[b] = nn.Identity()
        for name, child in list(mod._modules.items()):
            if name.startswith("conv") and isinstance(child, convs):
                bn_name = "bn" + name[4:]
                if isinstance(mod._modules.get(bn_name), bns):
                    mod._modules[name] = fuse_conv_bn_eval(child, mod._modules[bn_name])
                    mod._modules[bn_name] = nn.Identity()
    return model


class Engine:
    """Callable: `engine(x)` -> float32 logits, no autograd. `backend` says which path runs."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], backend: str, channels_last: bool = False):
        self.fn, self.backend, self.channels_last = fn, backend, channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.channels_last and isinstance(x, torch.Tensor) and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out = self.fn(x)
            return out.float() if isinstance(out, torch.Tensor) else out

    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        chunks = [self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return torch.cat(chunks) if chunks else torch.empty((0, 0))

    def parts(self) -> list[Engine]:
        return [self]


class Dispatch(Engine):
    """Two engines split by batch size: calls of fewer than `split` rows run `small`, the others `large`
    (the choice measured at each size differed)."""

    def __init__(self, small: Engine, large: Engine, split: int):
        self.small, self.large, self.split = small, large, split
        self.backend = f"{small.backend} below {split} rows, else {large.backend}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (self.small if len(x) < self.split else self.large)(x)

    def parts(self) -> list[Engine]:
        return [self.small, self.large]


def eager_engine(model: nn.Module) -> Engine:
    return Engine(model.eval(), "eager")


def torch_engine(model: nn.Module, spec: dict) -> Engine:
    """Eval copy, BN folded, channels_last for 4-D inputs."""
    m = fold_batchnorm(copy.deepcopy(model).eval())
    cl = len(spec["input_shape"]) == 3 and any(isinstance(x, nn.Conv2d) for x in m.modules())
    if cl:
        m = m.to(memory_format=torch.channels_last)
    return Engine(m, "torch", channels_last=cl)


class _OrtRun:
    def __init__(self, session):
        self.session, self.input = session, session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(self.session.run(None, {self.input: arr})[0])


def onnx_engine(model: nn.Module, spec: dict, spinning: bool = True, threads: int | None = None) -> Engine:
    """Exported to a temp file, loaded by onnxruntime (the session holds the graph in memory)."""
    import onnxruntime as ort

    from kdflow.compress import export_onnx

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:  # sharing the cores with an event loop / torch: idle threads must not spin
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory(prefix="kdflow-engine-") as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", list(spec["input_shape"]))
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return Engine(_OrtRun(session), "onnx")


def int8_engine(model: nn.Module, spec: dict, calib: torch.Tensor, threads: int | None = None) -> Engine:
    """onnxruntime static int8 (QDQ, per-channel weights, activations calibrated on `calib`). Never picked
    by `choose`: whether it pays (speed and the accuracy it loses) is for `benchmarks/inference_speed.py`
    and the evaluate stage to show; it is not faster than fp32 for every model on every CPU."""
    import onnxruntime as ort

    from kdflow.compress import export_onnx, quantize_onnx_int8

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="kdflow-int8-") as tmp:
        fp32 = export_onnx(model, Path(tmp) / "model.onnx", list(spec["input_shape"]))
        q = quantize_onnx_int8(fp32, Path(tmp) / "model-int8.onnx", calib.numpy(), batch=32)
        session = ort.InferenceSession(str(q), opts, providers=["CPUExecutionProvider"])
    return Engine(_OrtRun(session), "onnx-int8")


def measure(engines: dict[str, Engine], x: torch.Tensor, rounds: int = 5, warmup: int = 1,
            budget_s: float | None = None) -> dict[str, float]:
    """Samples/s of each engine on `x`: median of interleaved rounds, warm-up excluded. With `budget_s`,
    the number of rounds is what fits the budget after the warm-up (1 at least, `rounds` at most): a
    model slow enough that one round fills the budget averages the machine's load within that round
    (the ResNet teacher under load 10: 9.9 s to choose with 3 rounds at least)."""
    from kdflow.evaluation.perf import interleaved

    fns = {k: (lambda e=e: e(x)) for k, e in engines.items()}
    if budget_s is not None:
        spent = interleaved(fns, 1, 0)  # the warm-up round, timed: what one round costs
        warmup = max(0, warmup - 1)
        rounds = max(1, min(rounds, int(budget_s / max(sum(t[0] for t in spent.values()), 1e-9))))
    times = interleaved(fns, rounds, warmup)
    return {k: len(x) / float(np.median(t)) for k, t in times.items()}


def choose(model: nn.Module, spec: dict, batches: tuple[int, ...] = MEASURE_BATCHES, rounds: int = 7,
           budget_s: float = MEASURE_BUDGET_S) -> dict:
    """{"backend", "by_batch": {size: backend}, "samples_per_s": {size: {backend: samples/s}}}: torch vs
    onnx side by side at each size; "backend" is the bulk (largest) size's winner."""
    if not is_tensor_model(model, spec):
        return {"backend": "eager", "reason": "not a float-tensor Python model"}
    engines = {"torch": torch_engine(model, spec)}
    try:
        engines["onnx"] = onnx_engine(model, spec)
    except Exception as exc:  # an op the exporter cannot take: torch it is
        log.warning("onnx backend unavailable: %s", str(exc).splitlines()[0][:200])
    by_batch, sps = {}, {}
    for batch in batches:
        x = torch.randn(batch, *spec["input_shape"])
        if isinstance(getattr(model, "std", None), torch.Tensor):  # raw inputs: a Classifier normalizes inside
            x = x * model.std + model.mean
        at = measure(engines, x, rounds, budget_s=budget_s / len(batches))
        by_batch[str(batch)] = max(("torch", "onnx"), key=lambda k: at.get(k, 0.0))
        sps[str(batch)] = {k: round(v, 1) for k, v in at.items()}
    return {"backend": by_batch[str(max(batches))], "by_batch": by_batch, "samples_per_s": sps}


def _split(by_batch: dict[str, str]) -> tuple[str, str, int] | None:
    """(small-batch backend, bulk backend, split rows) when the recorded choices differ by size: the split
    is the geometric middle of the two measured sizes (16 for 1 and 256)."""
    sizes = sorted(int(k) for k in by_batch)
    if len(sizes) < 2 or by_batch[str(sizes[0])] == by_batch[str(sizes[-1])]:
        return None
    small, large = by_batch[str(sizes[0])], by_batch[str(sizes[-1])]
    return small, large, max(2, round((sizes[0] * sizes[-1]) ** 0.5))


def _single(model: nn.Module, spec: dict, backend: str, spinning: bool, threads: int | None) -> Engine:
    if backend == "onnx":
        try:
            return onnx_engine(model, spec, spinning, threads)
        except Exception as exc:
            log.warning("onnx backend failed, using torch: %s", str(exc).splitlines()[0][:200])
    if backend in ("torch", "onnx"):
        return torch_engine(model, spec)
    return eager_engine(model)


def engine(model: nn.Module, spec: dict, backend: str = "auto", spinning: bool = True,
           threads: int | None = None, bulk: bool = False) -> Engine:
    """The fastest known path for `model`: `backend` forces one; `auto` takes the choice recorded in
    `spec["inference"]` (per batch size when it differs by size), else measures now. `bulk`: one backend,
    the bulk size's, for every call, so outputs do not depend on how samples fall into batches, and engine-torch
    when nothing is recorded rather than a measurement per process (soft targets computed in shards must
    equal one generation bit for bit)."""
    if backend not in BACKENDS:
        raise KdflowError(f"unknown inference backend '{backend}'; allowed: {', '.join(BACKENDS)}")
    if backend == "eager" or not is_tensor_model(model, spec):
        return eager_engine(model)
    if backend == "auto":
        recorded = spec.get("inference") or {}
        if not recorded.get("backend") and bulk:  # a measurement per process could pick differently per shard
            return _single(model, spec, "torch", spinning, threads)
        choice = recorded if recorded.get("backend") else choose(model, spec)
        split = None if bulk else _split(choice.get("by_batch") or {})
        if split is not None:
            small, large, rows = split
            return Dispatch(_single(model, spec, small, spinning, threads),
                            _single(model, spec, large, spinning, threads), rows)
        backend = choice["backend"]
    return _single(model, spec, backend, spinning, threads)
