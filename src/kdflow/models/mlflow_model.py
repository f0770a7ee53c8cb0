"""A kdflow model registered in MLflow: logged as an MLflow Model (torch.export `pt2`, signature, input
example) with kdflow's `model.json` + `model.pt` beside it (`kdflow.tracking` holds the MLflow plumbing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdflow import tracking
from kdflow.io import read_json
from kdflow.models import load_model


def register_model(model_dir: Path, name: str, tags: dict[str, str] | None = None,
                   teacher_dir: Path | None = None) -> str:
    """Log the student as an MLflow Model (torch.export `pt2`, signature, input example) with kdflow's
    `model.json` + `model.pt` beside it, register it, return the new version.

    The teacher (the shadow oracle of a served student) is logged under the run's `teacher/`
    artifacts and named by the version tag `kdflow.teacher_uri`. Must run inside an active MLflow run.
    """
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    model, spec = load_model(model_dir)
    example = np.zeros((2, *spec["input_shape"]), np.float32)  # batch 2 keeps the batch dim dynamic in torch.export
    if spec.get("modality") == "text":  # token ids: [CLS]-like first token, the rest padding
        example = np.full((2, min(spec["input_shape"][0], 16)), spec["text"]["pad_id"], np.int64)
        example[:, 0] = 1
    with torch.no_grad():
        out = model(torch.from_numpy(example)).numpy()
    info = mlflow.pytorch.log_model(
        model, name="model", serialization_format="pt2", input_example=example,
        signature=infer_signature(example, out), registered_model_name=name,
        extra_files=[str(model_dir / "model.json"), str(model_dir / "model.pt"),
                     *(str(f) for f in sorted((model_dir / "tokenizer").glob("*")))],  # a text model's tokenizer
        pip_requirements=["torch", "kdflow"],
    )
    version = str(info.registered_model_version)
    tags = dict(tags or {})
    if teacher_dir is not None:
        program = read_json(teacher_dir / "model.json", "teacher spec").get("program")  # an imported .pt2/.onnx
        for file in ("model.json", "model.pt", *([program] if program else [])):
            mlflow.log_artifact(str(teacher_dir / file), "teacher")
        tags[tracking.TEACHER_TAG] = f"runs:/{mlflow.active_run().info.run_id}/teacher"
    c = tracking.client()
    for k, v in tags.items():
        c.set_model_version_tag(name, version, k, v)
    return version
