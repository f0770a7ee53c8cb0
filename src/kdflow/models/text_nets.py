"""Text networks: token ids (B, L) padded with the tokenizer's pad id in, logits out.

- `text-bert`: a small BERT encoder + classifier built from a `BertConfig` (layers, hidden, heads);
- `text-bilstm`: embeddings → BiLSTM → max-pool → MLP (Tang et al. 2019, "Distilling task-specific
  knowledge from BERT into simple neural networks");
- `text-cnn`: embeddings → parallel 1-D convolutions → max-pool (Kim 2014), the fastest on CPU;
- `hf-text:`: any `transformers` sequence classifier, rebuilt from the config kept in model.json.

The dataset's tokenizer facts (vocab size, pad/sep ids, pair task) come from the model spec's `text`
entry (`kdflow.models.build_model` passes them as kwargs), so a student always matches the teacher's
vocabulary. The attention mask is `ids != pad_id` and, for pairs, token types are 1 after the first
[SEP]: one int tensor is the whole input, as for every other modality.
"""

from __future__ import annotations

import torch
from torch import nn

from kdflow.errors import KdflowError
from kdflow.models.archs import register_arch
from kdflow.models.prefixed_archs import hf_config
from kdflow.optional import need_library


def text_spec(info: dict) -> dict:
    """What a model spec records about the data's tokenization (empty for non-text data)."""
    if info.get("modality") != "text":
        return {}
    t = info["tokenizer"]
    return {"modality": "text", "text": {"vocab_size": t["vocab_size"], "pad_id": t["pad_id"],
                                         "sep_id": t["sep_id"], "pair": t["pair"]}}


class TextClassifier(nn.Module):
    """The text counterpart of `kdflow.models.Classifier`: no input normalization, ids go straight in."""

    modality = "text"

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _token_types(ids: torch.Tensor, sep_id: int | None, pair: bool) -> torch.Tensor | None:
    if not pair or sep_id is None:
        return None
    sep = (ids == sep_id).long()
    return ((sep.cumsum(1) - sep) > 0).long()  # segment B starts after the first [SEP]


class HFTextNet(nn.Module):
    """A `transformers` sequence classifier as a plain logits network over padded ids."""

    def __init__(self, model: nn.Module, pad_id: int, sep_id: int | None = None, pair: bool = False):
        super().__init__()
        self.model, self.pad_id, self.sep_id, self.pair = model, pad_id, sep_id, pair

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        mask = (ids != self.pad_id).long()
        tt = _token_types(ids, self.sep_id, self.pair)
        kw = {"token_type_ids": tt} if tt is not None else {}
        return self.model(input_ids=ids, attention_mask=mask, **kw).logits


def _transformers():
    return need_library("transformers", "a text transformer")


@register_arch("text-bert")
def text_bert(input_shape, num_classes, vocab_size, pad_id, sep_id=None, pair=False, layers=2, hidden=128,
              heads=2, intermediate=None, dropout=0.1, max_positions=512):
    tf = _transformers()
    if hidden % heads:
        raise KdflowError(f"text-bert: hidden {hidden} is not a multiple of heads {heads}")
    conf = tf.BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=intermediate or 4 * hidden,
                         hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                         max_position_embeddings=max(max_positions, int(input_shape[0])), num_labels=num_classes,
                         pad_token_id=pad_id, type_vocab_size=2)
    return HFTextNet(tf.BertForSequenceClassification(conf), pad_id, sep_id, pair)


@register_arch("hf-text", prefixed=True)
def hf_text(ref: str, kwargs: dict, input_shape, num_classes: int) -> nn.Module:
    """`hf-text:` rebuilt from `kwargs.config` (written by the Hugging Face text source); weights from model.pt."""
    tf = _transformers()
    model = tf.AutoModelForSequenceClassification.from_config(hf_config(kwargs["config"]))
    return HFTextNet(model, kwargs["pad_id"], kwargs.get("sep_id"), kwargs.get("pair", False))


def _masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of (B, L, D) features, ignoring padding."""
    return h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).max(1).values


@register_arch("text-bilstm")
class BiLSTM(nn.Module):
    """Two LSTMs, the backward one over each sequence reversed within its own length: padding never reaches a
    real token's state, without packed sequences (which torch.export and ONNX cannot trace)."""

    def __init__(self, input_shape, num_classes, vocab_size, pad_id, sep_id=None, pair=False, embed=128,
                 hidden=150, layers=1, mlp=200, dropout=0.1):
        super().__init__()
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=pad_id)
        drop = dropout if layers > 1 else 0.0
        self.fwd = nn.LSTM(embed, hidden, layers, batch_first=True, dropout=drop)
        self.bwd = nn.LSTM(embed, hidden, layers, batch_first=True, dropout=drop)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, mlp), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(mlp, num_classes))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        mask = ids != self.pad_id
        steps = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        lengths = mask.sum(1, keepdim=True)
        rev = torch.where(steps < lengths, lengths - 1 - steps, steps)  # an involution: reverses the real tokens
        e = self.embed(ids)
        h_f, _ = self.fwd(e)
        h_b, _ = self.bwd(e.gather(1, rev.unsqueeze(-1).expand_as(e)))
        h_b = h_b.gather(1, rev.unsqueeze(-1).expand_as(h_b))
        return self.head(_masked_max(torch.cat([h_f, h_b], -1), mask | (steps == 0)))


@register_arch("text-cnn")
class TextCNN(nn.Module):
    def __init__(self, input_shape, num_classes, vocab_size, pad_id, sep_id=None, pair=False, embed=128,
                 channels=128, kernels=(3, 4, 5), dropout=0.1):
        super().__init__()
        self.pad_id, self.k_max = pad_id, max(kernels)
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(embed, channels, k, padding=k // 2) for k in kernels)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels * len(kernels), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        mask = ids != self.pad_id
        e = self.embed(ids).transpose(1, 2)  # (B, E, L)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(e))[:, :, : ids.shape[1]].transpose(1, 2)  # even kernels give one extra step
            pooled.append(_masked_max(h, mask[:, : h.shape[1]]))
        return self.head(self.dropout(torch.cat(pooled, 1)))


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer block list of a `transformers` encoder (BERT-style or DistilBERT-style)."""
    base = getattr(model, "base_model", model)
    for path in ("encoder.layer", "transformer.layer", "layers"):
        node = base
        for part in path.split("."):
            node = getattr(node, part, None)
        if isinstance(node, nn.ModuleList):
            return node
    raise KdflowError(f"cannot find the encoder layers of {type(model).__name__} to keep a subset of them")


def keep_layers(model: nn.Module, layers: list[int]) -> None:
    """DistilBERT's student init: keep only `layers` (e.g. every other one) of the teacher, in that order."""
    blocks = encoder_layers(model)
    if not layers or any(not 0 <= i < len(blocks) for i in layers):
        raise KdflowError(f"layers {layers} out of range: the model has {len(blocks)} layers (0..{len(blocks) - 1})")
    kept = nn.ModuleList(blocks[i] for i in layers)
    parent = getattr(model, "base_model", model)
    for path in ("encoder", "transformer"):
        sub = getattr(parent, path, None)
        if sub is not None and getattr(sub, "layer", None) is blocks:
            sub.layer = kept
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(model.config, key):
            setattr(model.config, key, len(layers))
