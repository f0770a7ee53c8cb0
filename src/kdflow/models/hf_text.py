"""Hugging Face text models as teachers or starting points (the `hf` source on text data, and `layers:`).

`AutoModelForSequenceClassification.from_pretrained(dir, local_files_only=True)`: never the hub, never
remote code. A fine-tuned classifier dir is an imported teacher as is; a bare pretrained encoder dir
(no sequence-classification head) gets a fresh head sized for the data's classes, for `train_teacher`
to fine-tune (`teacher.init_from`). The saved kdflow model keeps the config in `model.json`
(`hf-text:` + `kwargs.config`) and rebuilds it with `from_config`, weights from `model.pt`.
"""

from __future__ import annotations

import re
from pathlib import Path

from kdflow.errors import KdflowError
from kdflow.models.sources import Loaded, SourceOptions, digest
from kdflow.models.text_nets import HFTextNet, keep_layers
from kdflow.optional import need_library

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
GENERIC_LABEL = re.compile(r"LABEL_\d+")


def check_vocab(model, src: SourceOptions, info: dict) -> dict:
    """The dataset's tokenizer record, once the model's vocabulary is known to cover its ids."""
    t = info["tokenizer"]
    if model.config.vocab_size < t["vocab_size"]:
        raise KdflowError(f"model source '{src.uri}': its vocabulary has {model.config.vocab_size} tokens but the "
                          f"dataset's tokenizer ({t['path']}) has {t['vocab_size']}: tokenize with the model's own "
                          "tokenizer (data.text.tokenizer)")
    return t


def load_text_classifier(path: Path, src: SourceOptions, info: dict, extra: dict | None = None) -> Loaded:
    tf = need_library("transformers", f"model source '{src.uri}'")
    if not (path / "config.json").is_file():
        raise KdflowError(f"model source '{src.uri}': {path} has no config.json (not a Hugging Face model directory)")
    kwargs = dict(extra if extra is not None else src.kwargs)
    try:
        config = tf.AutoConfig.from_pretrained(str(path), local_files_only=True)
        head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        if not head and "num_labels" not in kwargs:  # a bare encoder: a fresh head for the data's classes
            kwargs["num_labels"] = int(info["num_classes"])
        model = tf.AutoModelForSequenceClassification.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KdflowError(f"model source '{src.uri}': cannot load a Hugging Face sequence classifier from {path}: "
                          f"{str(exc).splitlines()[0]}") from None
    t = check_vocab(model, src, info)
    labels = [model.config.id2label[i] for i in sorted(model.config.id2label)]
    return Loaded(HFTextNet(model.eval(), t["pad_id"], t["sep_id"], t["pair"]), name="hf-text:",
                  kwargs={"config": model.config.to_dict()},
                  digests=digest(*(path / f for f in ("config.json", *WEIGHT_FILES))),
                  classes=None if not head or all(GENERIC_LABEL.fullmatch(c) for c in labels) else labels)


def layer_subset(ref: str, src: SourceOptions, info: dict) -> Loaded:
    """A teacher's embeddings + a subset of its layers (`kwargs.layers`, e.g. [0, 2, 4]) + its head."""
    layers = src.kwargs.get("layers")
    if not isinstance(layers, list) or not all(isinstance(i, int) for i in layers):
        raise KdflowError(f"model source '{src.uri}' needs kwargs.layers: a list of layer indices, e.g. [0, 2, 4]")
    path = Path(ref)
    if (path / "model.json").is_file():
        from kdflow.models.sources import SOURCES

        loaded = SOURCES["kdflow"].load(ref, src, info)
    else:
        rest = {k: v for k, v in src.kwargs.items() if k != "layers"}
        loaded = load_text_classifier(path, src, info, extra=rest)
    net = loaded.net
    if not isinstance(net, HFTextNet):
        raise KdflowError(f"model source '{src.uri}': only a transformers text model can keep a subset of its "
                          f"layers (this one is {loaded.name or type(net).__name__})")
    keep_layers(net.model, layers)
    return Loaded(net, name="hf-text:", kwargs={"config": net.model.config.to_dict()}, digests=loaded.digests)
