"""Networks from outside kdflow's built-in set, rebuilt by a prefixed name.

`build_net("timm:resnet18", kwargs, input_shape, num_classes)` and friends: each prefix is one
`@register_arch(prefix, prefixed=True)` builder in `kdflow.models.archs.ARCHS`. The builders never
download weights (`pretrained=False`, `weights=None`); weights come from a local file through
`kdflow.models.sources` or a kdflow model directory. Third-party libraries are imported lazily, so
kdflow works without the `[models]` extra until a model needs one.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch import nn

from kdflow.errors import KdflowError
from kdflow.models.archs import register_arch
from kdflow.optional import need_library


def import_class(ref: str) -> type:
    module, _, cls = ref.partition(":")
    if not module or not cls:
        raise KdflowError(f"model 'import:{ref}' must look like import:<module>:<Class>")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise KdflowError(f"model 'import:{ref}': cannot import {module}.{cls}: {exc}") from None


@register_arch("import", trusted=False, prefixed=True)
def _imported(ref: str, kwargs: dict, input_shape: list[int], num_classes: int) -> nn.Module:
    cls = import_class(ref)
    params = inspect.signature(cls).parameters
    extra = {k: v for k, v in (("input_shape", input_shape), ("num_classes", num_classes))
             if k in params and k not in kwargs}
    return cls(**extra, **kwargs)


@register_arch("torchvision", prefixed=True)
def _torchvision(ref: str, kwargs: dict, input_shape: list[int], num_classes: int) -> nn.Module:
    tvm = need_library("torchvision.models", f"model 'torchvision:{ref}'")
    try:
        return tvm.get_model(ref, weights=None, **{"num_classes": num_classes, **kwargs})
    except ValueError as exc:
        raise KdflowError(f"model 'torchvision:{ref}': {exc}") from None


@register_arch("timm", prefixed=True)
def _timm(ref: str, kwargs: dict, input_shape: list[int], num_classes: int) -> nn.Module:
    timm = need_library("timm", f"model 'timm:{ref}'")
    try:
        return timm.create_model(ref, pretrained=False, **{"num_classes": num_classes, **kwargs})
    except RuntimeError as exc:  # timm: "Unknown model (name)"
        raise KdflowError(f"model 'timm:{ref}': {exc}") from None


class HFImageNet(nn.Module):
    """A `transformers` image classifier as a plain logits network: pixel_values in, logits out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(pixel_values=x).logits


def hf_config(config: dict[str, Any]):
    transformers = need_library("transformers", "a Hugging Face model")
    conf = dict(config)
    model_type = conf.pop("model_type", None)
    if not model_type:
        raise KdflowError("Hugging Face config has no model_type")
    return transformers.AutoConfig.for_model(model_type, **conf)


@register_arch("hf-image", prefixed=True)
def _hf_image(ref: str, kwargs: dict, input_shape: list[int], num_classes: int) -> nn.Module:
    """Rebuilt from the config stored in model.json (`kwargs.config`); weights come from model.pt."""
    transformers = need_library("transformers", "a Hugging Face model")
    return HFImageNet(transformers.AutoModelForImageClassification.from_config(hf_config(kwargs["config"])))
