"""ONNX export of a text model: `model.onnx` taking `input_ids` (batch × sequence, both dynamic, padded with
the tokenizer's pad id) to `logits`, with the tokenizer saved beside it so a runtime without kdflow can
tokenize exactly as training did. Parity with the torch model is checked on a batch of another shape."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from kdflow.errors import KdflowError


def _ids(spec: dict, batch: int, length: int, seed: int) -> torch.Tensor:
    t = spec["text"]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(5, t["vocab_size"] - 1), t["vocab_size"], (batch, length), generator=g)
    ids[1:, length // 2:] = t["pad_id"]  # padded rows: the mask path is traced too
    return ids


def export_text(model: torch.nn.Module, spec: dict, model_dir: Path, out: Path, opset: int = 17) -> dict:
    from kdflow.compress import onnx_session
    from kdflow.data.tokenized import TOKENIZER_DIR

    path = Path(out) / "model.onnx"
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (_ids(spec, 2, 8, 0),), str(path), dynamo=False,
                              input_names=["input_ids"], output_names=["logits"], opset_version=opset,
                              dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}})
    except Exception as exc:
        raise KdflowError(f"ONNX export failed: {str(exc).splitlines()[0][:300]}") from None
    if (Path(model_dir) / TOKENIZER_DIR).is_dir():
        shutil.copytree(Path(model_dir) / TOKENIZER_DIR, Path(out) / TOKENIZER_DIR, dirs_exist_ok=True)
    x = _ids(spec, 3, 13, 1)
    with torch.no_grad():
        ref = model(x).numpy()
    got = onnx_session(path).run(None, {"input_ids": x.numpy().astype(np.int64)})[0]
    return {"onnx_max_abs_dlogit": float(np.abs(got - ref).max()), "onnx_bytes": path.stat().st_size,
            "input": "input_ids int64 (batch, sequence), padded with pad_id", "pad_id": spec["text"]["pad_id"],
            "tokenizer": TOKENIZER_DIR}
