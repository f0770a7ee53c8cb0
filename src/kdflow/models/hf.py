"""A Hugging Face image classifier directory as a teacher (or a student's starting point).

`AutoModelForImageClassification.from_pretrained(dir, local_files_only=True)`: never the hub, never
remote code. The model's own config gives its input size (`image_size`, `num_channels`), the
preprocessor config its normalization (`image_mean`/`image_std`, applied to pixels in [0, 1]) and
`id2label` its class names. The saved kdflow model keeps the config in `model.json`
(`hf-image:` + `kwargs.config`) and rebuilds it with `from_config`, weights from `model.pt`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kdflow.errors import KdflowError
from kdflow.models.prefixed_archs import HFImageNet
from kdflow.models.sources import Loaded, SourceOptions, digest
from kdflow.optional import need_library

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
GENERIC_LABEL = re.compile(r"LABEL_\d+")


def _normalization(path: Path) -> tuple[list[float] | None, list[float] | None]:
    pre = path / "preprocessor_config.json"
    if not pre.is_file():
        return None, None
    conf = json.loads(pre.read_text())
    if not conf.get("do_normalize", True) or conf.get("image_mean") is None:
        return None, None
    return [float(v) for v in conf["image_mean"]], [float(v) for v in conf["image_std"]]


def _input_shape(config) -> list[int | None] | None:
    size = getattr(config, "image_size", None)
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return [getattr(config, "num_channels", None), h, w]


def load_image_classifier(path: Path, src: SourceOptions) -> Loaded:
    transformers = need_library("transformers", f"model source '{src.uri}'")
    if not (path / "config.json").is_file():
        raise KdflowError(f"model source '{src.uri}': {path} has no config.json (not a Hugging Face model directory)")
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False, **src.kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KdflowError(f"model source '{src.uri}': cannot load a Hugging Face image classifier from {path}: "
                          f"{str(exc).splitlines()[0]}") from None
    config = model.config
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    mean, std = _normalization(path)
    files = [path / f for f in ("config.json", "preprocessor_config.json", *WEIGHT_FILES)]
    return Loaded(HFImageNet(model.eval()), name="hf-image:", kwargs={"config": config.to_dict()},
                  digests=digest(*files), input_shape=_input_shape(config), mean=mean, std=std,
                  classes=None if all(GENERIC_LABEL.fullmatch(c) for c in labels) else labels)
