"""Tiny text fixtures built locally: a WordPiece vocab, a random BERT (a few hundred kB), a labeled csv.

The sentences are generated from two word lists (positive / negative) so a tiny model can learn them in
a few epochs; nothing is downloaded.
"""

from __future__ import annotations

import random
from pathlib import Path

POS = ["good", "great", "fine", "lovely", "superb", "warm", "bright", "fun"]
NEG = ["bad", "awful", "dull", "poor", "boring", "cold", "weak", "sad"]
FILL = ["the", "film", "was", "a", "story", "and", "very", "movie", "plot", "really", "it", "is", "not", "so"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label name) pairs; label 'pos' or 'neg' from which word list dominates."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.sample(POS if label == "pos" else NEG, 2) + rng.sample(FILL, rng.randint(2, 8))
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


def write_tokenizer(path: Path) -> Path:
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(SPECIAL + POS + NEG + FILL + ["##s", "##ly"]) + "\n")
    # positional: `vocab_file` in transformers 4, `vocab` (a path or dict) in 5
    BertTokenizerFast(str(path / "vocab.txt"), do_lower_case=True).save_pretrained(str(path))
    return path


def write_bert(path: Path, num_labels: int | None = 2, layers: int = 2, hidden: int = 32, seed: int = 0,
               id2label: dict | None = None) -> Path:
    """A random BERT dir with tokenizer: a sequence classifier, or (num_labels None) a bare encoder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    write_tokenizer(path)
    vocab = len((path / "vocab.txt").read_text().split())
    conf = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=2 * hidden, max_position_embeddings=64,
                      **({"num_labels": num_labels} if num_labels else {}),
                      **({"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else {}))
    torch.manual_seed(seed)
    model = BertForSequenceClassification(conf) if num_labels else BertModel(conf)
    model.save_pretrained(str(path))
    return path


def write_csv(path: Path, n: int = 200, seed: int = 0, extra: str = "") -> Path:
    rows = ["text,label"] + [f"{t},{y}" for t, y in sentences(n, seed)]
    path.write_text("\n".join(rows) + "\n" + extra)
    return path


def text_params(tmp: Path, csv: Path, tok: Path, teacher: dict, student: dict | None = None) -> dict:
    """A tiny text profile as a dict (tests/params-text-tiny.yaml with paths filled in)."""
    import yaml

    raw = yaml.safe_load((Path(__file__).parents[1] / "params-text-tiny.yaml").read_text())
    raw["data"]["source"] = f"csv:{csv}"
    raw["data"]["text"]["tokenizer"] = str(tok)
    raw["teacher"] = {**raw["teacher"], **teacher}
    if student:
        raw["student"] = {**raw["student"], **student}
    return raw
