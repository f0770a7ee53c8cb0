"""Optional heavy dependencies, imported on first use: `need_library("transformers", what)`.

kdflow's modules import each other at module level; the only imports inside functions are of heavy or
optional third-party libraries (transformers, timm, torchvision, onnx/onnxruntime, mlflow, datasets,
pyarrow, pandas, sklearn, fsspec, kfp, kubernetes, dvc, prometheus_client), so that a command which does
not need one starts fast and kdflow works without the `[models]`/`[text]` extras until a model needs one.
"""

from __future__ import annotations

import importlib

from kdflow.errors import KdflowError


def need_library(module: str, what: str):
    try:
        return importlib.import_module(module)
    except Exception as exc:  # missing, or (torchvision) built for another torch
        raise KdflowError(f"{what} needs a working {module.split('.')[0]}: pip install 'kdflow[models]' "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
