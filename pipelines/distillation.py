"""Compile the KD pipeline from the repository root: `python pipelines/distillation.py [params] [out]`."""

import sys

import yaml

from kdflow.kfp.entrypoints import compile_pipeline
from kdflow.kfp.pipeline import NAME, build  # noqa: F401  (the pipeline itself lives in the package)

if __name__ == "__main__":
    params, out = (sys.argv[1:] + ["params.yaml", "pipeline.yaml"][len(sys.argv) - 1:])[:2]
    print(compile_pipeline(yaml.safe_load(open(params)), out))
