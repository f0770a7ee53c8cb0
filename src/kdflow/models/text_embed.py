"""Sentence encoders (`task: embedding`): token ids (B, L) in, one pooled vector per sentence out.

- `encoder:<dir>`: a Hugging Face encoder directory read as a sentence encoder, the way sentence-transformers
  runs it: `AutoModel` (local files only) + pooling over the attention mask + optional L2 normalization, the
  pooling mode and normalization read from the directory's `modules.json` / `1_Pooling/config.json` when it
  is a sentence-transformers model (all-MiniLM-L6-v2: mean pooling, normalized). Saved as `hf-encoder:` with
  the config in `kwargs`, rebuilt with `AutoModel.from_config`.
- `text-embed`: the student, a small BERT (as `text-bert`) + mean pooling + a learned linear projection to
  `dim` (the teacher's width; distill checks it against the soft-target store) when its width differs.

A model spec of an embedding model carries `task: embedding` and `embedding_dim`; `num_classes` stays the
dataset's (the linear probe's classes).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kdflow.errors import KdflowError
from kdflow.models.archs import register_arch
from kdflow.models.prefixed_archs import hf_config
from kdflow.models.text_nets import text_bert
from kdflow.optional import need_library

EMBEDDING = "embedding"
POOLINGS = ("mean", "cls", "max")


def pool(h: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, L, D) token states → (B, D) over the real tokens (sentence-transformers' Pooling)."""
    if mode == "cls":
        return h[:, 0]
    m = mask.unsqueeze(-1).to(h.dtype)
    if mode == "max":
        return h.masked_fill(m == 0, torch.finfo(h.dtype).min).max(1).values
    return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


class EncoderNet(nn.Module):
    """A `transformers` encoder (no head) → pooled sentence vector, optionally projected and L2-normalized."""

    def __init__(self, model: nn.Module, pad_id: int, pooling: str = "mean", normalize: bool = False,
                 project: int | None = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise KdflowError(f"pooling '{pooling}' is not supported; use one of {', '.join(POOLINGS)}")
        self.model, self.pad_id, self.pooling, self.normalize = model, pad_id, pooling, normalize
        width = model.config.hidden_size
        self.project = nn.Linear(width, project) if project and project != width else nn.Identity()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        mask = (ids != self.pad_id).long()
        h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        e = self.project(pool(h, mask, self.pooling))
        return F.normalize(e, dim=-1) if self.normalize else e


@register_arch("text-embed")
def text_embed(input_shape, num_classes, vocab_size, pad_id, sep_id=None, pair=False, layers=2, hidden=128,
               heads=2, intermediate=None, dropout=0.1, dim=None, pooling="mean", normalize=False, max_positions=512):
    """The embedding student: `text-bert`'s encoder without its classifier, pooled, projected to `dim`."""
    bert = text_bert(input_shape, 1, vocab_size, pad_id, sep_id, pair, layers, hidden, heads, intermediate, dropout,
                     max_positions).model.bert
    bert.pooler = None  # the CLS pooler is unused by mean pooling
    return EncoderNet(bert, pad_id, pooling, normalize, dim)


@register_arch("hf-encoder", prefixed=True)
def hf_encoder(ref: str, kwargs: dict, input_shape, num_classes: int) -> nn.Module:
    """`hf-encoder:` rebuilt from `kwargs.config` (written by the `encoder:` source); weights from model.pt."""
    tf = need_library("transformers", "a sentence encoder")
    model = _without_pooler(tf.AutoModel.from_config, hf_config(kwargs["config"]))
    return EncoderNet(model, kwargs["pad_id"], kwargs.get("pooling", "mean"), kwargs.get("normalize", False))


def _without_pooler(make, *args, **kwargs) -> nn.Module:
    """BERT-style encoders without their CLS pooler (unused by sentence pooling); others as they are."""
    try:
        return make(*args, add_pooling_layer=False, **kwargs)
    except TypeError:
        return make(*args, **kwargs)


def sentence_config(path: Path) -> dict:
    """Pooling mode and normalization of a sentence-transformers directory (mean, no normalization otherwise)."""
    modules = path / "modules.json"
    out = {"pooling": "mean", "normalize": False}
    if not modules.is_file():
        return out
    entries = json.loads(modules.read_text())
    types = [str(e.get("type", "")) for e in entries]
    out["normalize"] = any(t.endswith(".Normalize") for t in types)
    for e in entries:
        if str(e.get("type", "")).endswith(".Pooling"):
            conf = path / e.get("path", "") / "config.json"
            if conf.is_file():
                c = json.loads(conf.read_text())
                modes = [m for m in ("mean", "cls", "max") if c.get(f"pooling_mode_{m}_tokens" if m != "cls"
                                                                      else "pooling_mode_cls_token")]
                extra = [k for k, v in c.items() if k.startswith("pooling_mode_") and v and k not in (
                    "pooling_mode_mean_tokens", "pooling_mode_cls_token", "pooling_mode_max_tokens")]
                if len(modes) != 1 or extra:
                    raise KdflowError(f"{conf}: pooling {modes + extra} is not supported (one of mean, cls, max)")
                out["pooling"] = modes[0]
    return out


def load_encoder(path: Path, src, info: dict):
    """`encoder:<dir>` → a `Loaded` sentence encoder. `src.kwargs` may set `pooling` and `normalize`."""
    from kdflow.models.hf_text import WEIGHT_FILES, check_vocab
    from kdflow.models.sources import Loaded, digest

    tf = need_library("transformers", f"model source '{src.uri}'")
    if not (path / "config.json").is_file():
        raise KdflowError(f"model source '{src.uri}': {path} has no config.json (not a Hugging Face model directory)")
    if info.get("modality") != "text":
        raise KdflowError(f"model source '{src.uri}': a sentence encoder needs a text dataset (data.text)")
    opts = {**sentence_config(path), **{k: v for k, v in src.kwargs.items() if k in ("pooling", "normalize")}}
    rest = {k: v for k, v in src.kwargs.items() if k not in ("pooling", "normalize")}
    try:
        model = _without_pooler(tf.AutoModel.from_pretrained, str(path), local_files_only=True,
                                trust_remote_code=False, **rest)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KdflowError(f"model source '{src.uri}': cannot load a Hugging Face encoder from {path}: "
                          f"{str(exc).splitlines()[0]}") from None
    t = check_vocab(model, src, info)
    net = EncoderNet(model.eval(), t["pad_id"], opts["pooling"], bool(opts["normalize"]))
    kwargs = {"config": model.config.to_dict(), "pad_id": t["pad_id"], **opts}
    return Loaded(net, name="hf-encoder:", kwargs=kwargs,
                  digests=digest(*(path / f for f in ("config.json", "modules.json", *WEIGHT_FILES))), embedding=True)


@torch.no_grad()
def embedding_dim(model: nn.Module, info: dict) -> int:
    """The width of a text model's output, by one forward on a two-token sentence."""
    t = info["tokenizer"]
    ids = [t["cls_id"] if t["cls_id"] is not None else 1, t["sep_id"] if t["sep_id"] is not None else 2]
    was = model.training
    out = model.eval()(torch.tensor([ids]))
    model.train(was)
    if out.ndim != 2:
        raise KdflowError(f"an embedding model must return (batch, dim) vectors, got shape {tuple(out.shape)}")
    return int(out.shape[1])


def input_embeddings(model: nn.Module) -> nn.Embedding:
    """The word-embedding table of a kdflow text model (a `transformers` encoder's, or a `.embed`)."""
    for node in (model, getattr(model, "net", None), getattr(getattr(model, "net", None), "model", None)):
        if node is None:
            continue
        if hasattr(node, "get_input_embeddings"):
            return node.get_input_embeddings()
        if isinstance(getattr(node, "embed", None), nn.Embedding):
            return node.embed
    raise KdflowError(f"cannot find the word embeddings of {type(model).__name__}")


@torch.no_grad()
def pca_word_embeddings(student: nn.Module, teacher: nn.Module) -> dict:
    """Start the student's word embeddings from the teacher's, reduced to the student's width by PCA
    (the teacher's top principal directions; same vocabulary required)."""
    s, t = input_embeddings(student), input_embeddings(teacher)
    if s.weight.shape[0] > t.weight.shape[0]:
        raise KdflowError(f"the student's vocabulary ({s.weight.shape[0]}) is larger than the teacher's "
                          f"({t.weight.shape[0]}): cannot start its word embeddings from the teacher's")
    w = t.weight.detach().float()[: s.weight.shape[0]]
    k = s.weight.shape[1]
    if k > w.shape[1]:
        raise KdflowError(f"the student's embeddings ({k}) are wider than the teacher's ({w.shape[1]})")
    centered = w - w.mean(0, keepdim=True)
    _, sv, v = torch.linalg.svd(centered, full_matrices=False)
    s.weight.copy_(centered @ v[:k].T)
    return {"word_embeddings": "teacher_pca", "explained_variance": float((sv[:k] ** 2).sum() / (sv ** 2).sum())}
