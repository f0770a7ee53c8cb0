"""Teachers without Python code: a `torch.export` program (`.pt2`) or an ONNX file (onnxruntime).

Both become a plain logits network that `kdflow.models.Classifier` wraps like any other, so soft
targets and evaluation treat them as usual. They have no named submodules, so feature distillation
and online mode (which need the teacher's modules or training graph) are refused with a clear error.

Safety: `torch.export.load` unpickles tensor subclasses, custom/opaque objects and legacy payloads,
and falls back to `weights_only=False` for sample inputs. `check_pt2` reads the archive's JSON
configs first and refuses any of those, so loading a `.pt2` never unpickles anything.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdflow.errors import KdflowError
from kdflow.models.archs import register_arch

SUFFIXES = {".pt2": "torch.export", ".onnx": "onnx"}


class ProgramNet(nn.Module):
    """Base: a frozen graph with no named submodules, so no feature terms or online training graph."""

    differentiable = True
    fmt = ""
    num_params = 0
    input_shape: list[int | None] | None = None

    def train(self, mode: bool = True):  # an exported graph is frozen in the mode it was exported in
        self.training = mode
        return self


class ExportNet(ProgramNet):
    fmt = "torch.export"

    def __init__(self, path: Path):
        super().__init__()
        check_pt2(path)
        try:
            ep = torch.export.load(str(path))
        except Exception as exc:
            raise KdflowError(f"cannot load exported program {path}: {str(exc).splitlines()[0]}") from None
        # kept outside the module tree: its weights live in the .pt2, not in kdflow's state_dict
        self._program = [ep.module()]
        self.num_params = sum(int(t.numel()) for t in ep.state_dict.values())
        vals = [n.meta.get("val") for n in ep.graph.nodes
                if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs]
        self.input_shape = [d if isinstance(d, int) else None for d in vals[0].shape[1:]] if len(vals) == 1 else None

    def forward(self, x):
        return self._program[0](x)


class OnnxNet(ProgramNet):
    fmt = "onnx"
    differentiable = False

    def __init__(self, path: Path):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # the teacher shares the process (and its cores) with torch: idle ORT threads must not spin
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.intra_op_num_threads = torch.get_num_threads()
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise KdflowError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise KdflowError(f"ONNX model {path} has {len(inputs)} inputs; a classifier teacher takes one tensor")
        self._input = inputs[0].name
        dims = inputs[0].shape
        self._batch = dims[0] if isinstance(dims[0], int) else None
        self.input_shape = [d if isinstance(d, int) else None for d in dims[1:]]
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        self.num_params = sum(int(np.prod(t.dims)) for t in graph.initializer)

    def forward(self, x):
        arr = x.detach().cpu().numpy().astype(np.float32, copy=False)
        step = self._batch or max(len(arr), 1)  # a fixed-batch export runs in chunks of its batch size
        outs = [self._session.run(None, {self._input: arr[i:i + step]})[0] for i in range(0, len(arr), step)]
        return torch.from_numpy(np.concatenate(outs) if outs else np.zeros((0, 0), np.float32))


def check_pt2(path: Path) -> None:
    """Refuse a .pt2 whose loading would unpickle anything (see the module docstring)."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise KdflowError(f"{path} is not a torch.export archive: {exc}") from None
    with z:
        for name in z.namelist():
            parts = name.split("/")
            if len(parts) >= 3 and parts[-3] == "data" and parts[-2] in ("weights", "constants"):
                if name.endswith(".pt"):
                    raise KdflowError(f"{path}: legacy pickled {parts[-2]} ({name}); re-save it with torch.export.save")
                if name.endswith("_config.json"):
                    for key, meta in json.loads(z.read(name)).get("config", {}).items():
                        if meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith(
                                ("weight_", "tensor_")):
                            raise KdflowError(f"{path}: {parts[-2]} entry '{key}' is a pickled object; kdflow "
                                              "loads only plain tensors")
            elif len(parts) >= 2 and parts[-2] == "sample_inputs":
                try:
                    torch.load(io.BytesIO(z.read(name)), weights_only=True)
                except Exception:
                    raise KdflowError(f"{path}: sample inputs {name} are not plain tensors") from None


def load_program(path: Path) -> ProgramNet:
    fmt = SUFFIXES.get(path.suffix)
    if fmt is None:
        raise KdflowError(f"unsupported program format '{path.suffix}' ({path}); use {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise KdflowError(f"program file not found: {path}")
    return ExportNet(path) if fmt == "torch.export" else OnnxNet(path)


@register_arch("program", prefixed=True)
def _program_name(ref: str, kwargs: dict, input_shape: list[int], num_classes: int) -> nn.Module:
    """`program:<scheme>` names an imported exported program: its file beside model.json is the network
    (`kdflow.models.load_model` reads it); it is never built from the name."""
    raise KdflowError(f"model 'program:{ref}' is an exported program: load its model directory, it cannot be built")
