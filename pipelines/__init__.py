"""KFP pipelines built from components/. `distillation_pipeline` is the pipeline for the repo's
params.yaml (built on first access); `build(raw_params, image)` makes one for any params."""

from pathlib import Path

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def __getattr__(name: str):
    if name == "distillation_pipeline":
        from kdflow.cluster import load_raw
        from pipelines.distillation import build

        return build(load_raw(PARAMS))
    raise AttributeError(name)
