"""Text sources, tokenization once in prepare, and ragged token-id splits padded per batch.

Sources (with `data.text` set): `csv:<file>`, `tsv:<file>` (no quoting, GLUE style), `jsonl:<file>`,
`parquet:<file>`, `datasets:<save_to_disk dir>` (a DatasetDict's `train` is the pool, its `test` the
predefined test split). One text column or a pair; labels as names or integers. A bad row (empty or
non-string text, missing or unknown label) fails naming its line, or is skipped and counted
(`data.bad_samples: skip`).

Tokenized with the teacher's own fast tokenizer (`AutoTokenizer.from_pretrained(local dir)`), stored
unpadded: per split `tokens` (int32, all samples end to end) + `offsets` (N+1), `y`, `id`, and the
texts themselves as UTF-8 bytes + offsets (evaluation times tokenization; serving tokenizes raw text).
Batches are padded to their own longest sample (`pad`), so a batch of short sentences stays short.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kdflow.config import Data, TextData
from kdflow.errors import KdflowError
from kdflow.names.data_sources import schemes
from kdflow.optional import need_library

KINDS = schemes("text")
TOKENIZER_DIR = "tokenizer"
STUDENT_VIEW = "student"  # the splits in the student's own tokenization, a dataset dir of its own
MODALITY = "text"


def is_text(info: dict) -> bool:
    return info.get("modality") == MODALITY


# ---------------------------------------------------------------- reading


@dataclass
class Rows:
    """One part of a source: texts (and pair texts), raw labels, and where each row came from."""

    a: list
    b: list | None
    labels: list | None
    where: list[str]


@dataclass
class TextRaw:
    a: list[str]
    b: list[str] | None
    y: np.ndarray
    classes: list[str]
    test: tuple[list[str], list[str] | None, np.ndarray] | None = None
    transfer: tuple[list[str], list[str] | None] | None = None
    skipped: dict = field(default_factory=lambda: {"count": 0, "examples": []})


def _columns(t: TextData, label: str | None) -> list[str]:
    return [t.column, *([t.pair_column] if t.pair_column else []), *([label] if label else [])]


def _check_columns(have: list[str], want: list[str], where: str) -> None:
    missing = [c for c in want if c not in have]
    if missing:
        raise KdflowError(f"{where}: column(s) {missing} not found; columns: {list(have)}")


def _from_records(records: dict[str, list], t: TextData, label: str | None, where: list[str]) -> Rows:
    return Rows(records[t.column], records[t.pair_column] if t.pair_column else None,
                records[label] if label else None, where)


def _read(spec: str, t: TextData, label: str | None, storage_options: dict) -> dict[str, Rows]:
    kind, _, path = spec.partition(":")
    if kind not in KINDS or not path:
        raise KdflowError(f"text source '{spec}': use one of {', '.join(f'{k}:<path>' for k in KINDS)}")
    want = _columns(t, label)
    if kind == "datasets":
        return _read_datasets(path, t, label, want, storage_options)
    if not Path(path).exists():
        raise KdflowError(f"data path not found: {path}")
    if kind == "jsonl":
        records: dict[str, list] = {c: [] for c in want}
        where = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise KdflowError(f"{path} line {n}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise KdflowError(f"{path} line {n}: expected a JSON object")
                for c in want:
                    records[c].append(row.get(c))
                where.append(f"{path} line {n}")
        if not where:
            raise KdflowError(f"{path}: no rows")
        _check_columns([c for c in want if any(v is not None for v in records[c])], want, path)
        return {"pool": _from_records(records, t, label, where)}
    import pandas as pd

    try:
        if kind == "parquet":
            df = pd.read_parquet(path)
            first, unit = 0, "row"
        else:
            df = pd.read_csv(path, sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False,
                             quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL)
            first, unit = 2, "line"  # the header is line 1
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise KdflowError(f"cannot read {kind} {path}: {str(exc).splitlines()[0]}") from None
    _check_columns(list(df.columns), want, f"{kind} {path}")
    records = {c: df[c].tolist() for c in want}
    return {"pool": _from_records(records, t, label, [f"{path} {unit} {i + first}" for i in range(len(df))])}


def _read_datasets(path: str, t: TextData, label: str | None, want: list[str], storage_options: dict):
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(path, storage_options=storage_options or None)
    except FileNotFoundError as exc:
        raise KdflowError(f"datasets {path}: not a save_to_disk directory: {exc}") from None
    parts = ({"pool": loaded["train"], **({"test": loaded["test"]} if "test" in loaded else {})}
             if isinstance(loaded, DatasetDict) else {"pool": loaded})
    out = {}
    for name, ds in parts.items():
        _check_columns(ds.column_names, want, f"datasets {path} ({name})")
        records = {c: ds[c] for c in want}
        feat = ds.features.get(label) if label else None
        if feat is not None and hasattr(feat, "names"):  # ClassLabel: ints that have names
            records[label] = [feat.names[v] if isinstance(v, int) and 0 <= v < len(feat.names) else v
                              for v in records[label]]
        out[name] = _from_records(records, t, label, [f"datasets {path} ({name}) row {i}" for i in range(len(ds))])
    return out


def _is_int(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int | np.integer):
        return True
    return isinstance(v, str) and v.strip().lstrip("-").isdigit()


def _label_names(parts: dict[str, Rows]) -> tuple[list[str], bool]:
    """Class names and whether labels are integers 0..K-1 (else names, sorted)."""
    seen = [v for v in parts["pool"].labels if v is not None and str(v).strip() != ""]
    if seen and all(_is_int(v) for v in seen):
        top = max(int(v) for v in seen)
        return [str(i) for i in range(top + 1)], True
    return sorted({str(v).strip() for v in seen}), False


class BadRows:
    """The bad-row policy: fail naming the row, or count it (with a few examples for dataset.json)."""

    def __init__(self, policy: str):
        self.policy, self.count, self.examples = policy, 0, []

    def __call__(self, where: str, problem: str) -> None:
        if self.policy == "fail":
            raise KdflowError(f"{where}: {problem} (set data.bad_samples: skip to skip bad rows)")
        self.count += 1
        if len(self.examples) < 10:
            self.examples.append(f"{where}: {problem}")


def _clean(rows: Rows, index: dict[str, int] | None, ints: bool, k: int, bad: BadRows):
    a, b, y = [], [] if rows.b is not None else None, []
    for i, where in enumerate(rows.where):
        texts = [rows.a[i]] + ([rows.b[i]] if rows.b is not None else [])
        if any(not isinstance(s, str) or not s.strip() for s in texts):
            bad(where, "empty or non-string text")
            continue
        if index is not None:
            v = rows.labels[i]
            if ints and _is_int(v) and 0 <= int(v) < k:
                label = int(v)
            elif not ints and v is not None and str(v).strip() in index:
                label = index[str(v).strip()]
            else:
                bad(where, f"unknown label {v!r} (classes: {', '.join(list(index)[:10])})")
                continue
            y.append(label)
        a.append(rows.a[i])
        if b is not None:
            b.append(rows.b[i])
    return a, b, np.asarray(y, np.int64)


def load_text(d: Data) -> TextRaw:
    t = d.text
    parts = _read(d.source, t, d.label_column, d.storage_options)
    classes, ints = _label_names(parts)
    if not classes:
        raise KdflowError(f"text source {d.source}: no labels in column '{d.label_column}'")
    index = {c: i for i, c in enumerate(classes)}
    bad = BadRows(d.bad_samples)
    a, b, y = _clean(parts["pool"], index, ints, len(classes), bad)
    raw = TextRaw(a, b, y, classes)
    if t.test:
        tt = t.model_copy(update={"column": t.test_column}) if t.test_column else t
        parts["test"] = _read(t.test, tt, d.label_column, d.storage_options)["pool"]
    if "test" in parts:
        raw.test = _clean(parts["test"], index, ints, len(classes), bad)
    if t.transfer:
        ta, tb, _ = _clean(_read(t.transfer, t, None, d.storage_options)["pool"], None, ints, 0, bad)
        raw.transfer = (ta, tb)
    raw.skipped = {"count": bad.count, "examples": bad.examples}
    if len(raw.y) < 3:
        raise KdflowError(f"text source {d.source}: {len(raw.y)} usable labeled rows")
    return raw


# ---------------------------------------------------------------- tokenization


def load_tokenizer(path: str | Path, truncation_side: str = "right"):
    transformers = need_library("transformers", f"tokenizer {path}")
    if not Path(path).is_dir():
        raise KdflowError(f"tokenizer directory not found: {path} (a local Hugging Face tokenizer dir)")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True, use_fast=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KdflowError(f"cannot load a tokenizer from {path}: {str(exc).splitlines()[0]}") from None
    if not tok.is_fast:
        raise KdflowError(f"tokenizer {path} has no fast (Rust) tokenizer; kdflow needs one")
    if tok.pad_token_id is None:
        raise KdflowError(f"tokenizer {path} has no pad token")
    tok.truncation_side = truncation_side
    return tok


def tokenize(tok, a: list[str], b: list[str] | None, max_length: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Ragged token ids: (tokens int32, offsets int64 N+1, count of truncated samples)."""
    ids = tok(a, b, truncation=True, max_length=max_length, return_attention_mask=False,
              return_token_type_ids=False)["input_ids"] if a else []
    full = tok(a, b, truncation=False, return_attention_mask=False, return_token_type_ids=False,
               return_length=True, verbose=False)["length"] if a else []
    lengths = np.fromiter((len(s) for s in ids), np.int64, len(ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.fromiter((t for s in ids for t in s), np.int32, int(offsets[-1]))
    return tokens, offsets, int(sum(f > m for f, m in zip(full, lengths)))


def tokenizer_meta(tok, t: TextData) -> dict:
    return {"path": t.tokenizer, "class": type(tok).__name__, "vocab_size": len(tok), "pad_id": tok.pad_token_id,
            "sep_id": tok.sep_token_id, "cls_id": tok.cls_token_id, "max_length": t.max_length,
            "truncation_side": t.truncation_side, "pair": t.pair_column is not None}


def length_stats(offsets: np.ndarray, truncated: int) -> dict:
    n = np.diff(offsets)
    if not len(n):
        return {"samples": 0}
    return {"samples": int(len(n)), "mean": round(float(n.mean()), 2), "p50": float(np.percentile(n, 50)),
            "p95": float(np.percentile(n, 95)), "max": int(n.max()), "truncated": truncated}


def encode_strings(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as UTF-8 bytes end to end + offsets (an .npz without pickled objects)."""
    blobs = [s.encode("utf-8") for s in texts]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in blobs])]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), np.uint8).copy(), offsets


def decode_strings(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    buf = data.tobytes()
    return [buf[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]


def digest_texts(a: list[str], b: list[str] | None) -> np.ndarray:
    pairs = zip(a, b) if b is not None else ((s, "") for s in a)
    return np.array([hashlib.blake2b(f"{x}\t{y}".encode(), digest_size=12).digest() for x, y in pairs], "S12")


def mask_copies(tokens: np.ndarray, offsets: np.ndarray, copies: int, prob: float, mask_id: int,
                special: set[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`copies` copies of every sample with each non-special token replaced by `mask_id` with chance `prob`
    (Tang et al. 2019's masking augmentation), on the ids: no re-tokenization, same lengths."""
    rng = np.random.default_rng(seed)
    out = np.tile(tokens, copies)
    hit = (rng.random(len(out)) < prob) & ~np.isin(out, list(special))
    out[hit] = mask_id
    lengths = np.tile(np.diff(offsets), copies)
    return out.astype(np.int32), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def ngram_copies(tokens: np.ndarray, offsets: np.ndarray, word_ids: list[list[int | None]], copies: int,
                 prob: float, max_n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`copies` copies of every sample, each cut with chance `prob` to a random n-gram of its words (n uniform in
    1..max_n, Tang et al. 2019): the tokens of words start..start+n-1 between the sample's own special tokens
    (`word_ids[i][j]` is None for a special token). Whole words, so a word piece never starts a sample."""
    rng = np.random.default_rng(seed)
    out, lengths = [], []
    for _ in range(copies):
        for i, words in enumerate(word_ids):
            ids = tokens[offsets[i]:offsets[i + 1]]
            if len(words) != len(ids):
                raise KdflowError(f"n-gram sampling: sample {i} re-tokenizes to {len(words)} tokens, stored {len(ids)}")
            n_words = 1 + max((w for w in words if w is not None), default=-1)
            if n_words and rng.random() < prob:
                n = min(int(rng.integers(1, max_n + 1)), n_words)
                lo = int(rng.integers(0, n_words - n + 1))
                keep = np.array([w is None or lo <= w < lo + n for w in words])
                ids = ids[keep]
            out.append(ids)
            lengths.append(len(ids))
    return (np.concatenate(out).astype(np.int32) if out else np.zeros(0, np.int32),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def plain_texts(tok, tokens: np.ndarray, offsets: np.ndarray, pair: bool) -> tuple[list[str], list[str] | None]:
    """Ids decoded back to text without the tokenizer's own [CLS]/[SEP]/padding (segments split at [SEP]), for
    another tokenizer to encode; [MASK] stays a token."""
    drop = {tok.cls_token_id, tok.pad_token_id, tok.bos_token_id} - {None}
    a, b = [], []
    for i in range(len(offsets) - 1):
        segs, cur = [], []
        for t in tokens[offsets[i]:offsets[i + 1]].tolist():
            if t == tok.sep_token_id or t == tok.eos_token_id:
                segs.append(cur)
                cur = []
            elif t not in drop:
                cur.append(t)
        segs = [s for s in [*segs, cur] if s] + [[], []]
        a.append(tok.decode(segs[0]).strip())
        b.append(tok.decode(segs[1]).strip())
    return a, (b if pair else None)


# ---------------------------------------------------------------- reading prepared splits


def read_split(data_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise KdflowError(f"dataset split not found: {path}")
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def split_texts(data_dir: str | Path, split: str) -> tuple[list[str], list[str] | None]:
    s = read_split(data_dir, split)
    a = decode_strings(s["text"], s["text_offsets"])
    b = decode_strings(s["pair"], s["pair_offsets"]) if "pair" in s else None
    return a, b


def pad(tokens: np.ndarray, offsets: np.ndarray, rows, pad_id: int) -> torch.Tensor:
    """Rows of a ragged split as a (B, longest in the batch) int64 tensor padded with `pad_id`."""
    rows = np.asarray(rows)
    starts, ends = offsets[rows], offsets[rows + 1]
    lens = ends - starts
    out = np.full((len(rows), max(int(lens.max(initial=0)), 1)), pad_id, np.int64)
    for i, (s, n) in enumerate(zip(starts, lens)):
        out[i, :n] = tokens[s:s + n]
    return torch.from_numpy(out)


def padded_split(data_dir: str | Path, split: str, pad_id: int) -> dict[str, np.ndarray]:
    """A whole split with `x` padded to its longest sample (callers that want every sample at once)."""
    s = read_split(data_dir, split)
    return {"x": pad(s["tokens"], s["offsets"], np.arange(len(s["y"])), pad_id).numpy(), "y": s["y"], "id": s["id"]}


class TokenBatches(Dataset):
    """Indexed by a list of positions: the batch (ids padded to its longest, y, id), like `TensorBatches`."""

    def __init__(self, parts: list[dict[str, np.ndarray]], pad_id: int):
        self.pad_id = pad_id
        shift = np.cumsum([0] + [int(p["offsets"][-1]) for p in parts[:-1]])
        self.tokens = np.concatenate([p["tokens"] for p in parts])
        self.offsets = np.concatenate([[0]] + [p["offsets"][1:] + s for p, s in zip(parts, shift)]).astype(np.int64)
        self.y = torch.from_numpy(np.concatenate([p["y"] for p in parts])).long()
        self.id = torch.from_numpy(np.concatenate([p["id"] for p in parts])).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx):
        idx = torch.as_tensor(idx)
        return pad(self.tokens, self.offsets, idx.numpy(), self.pad_id), self.y[idx], self.id[idx]


def iter_batches(data_dir: str | Path, splits: list[str], pad_id: int, batch_size: int, lo: int = 0,
                 hi: int | None = None):
    """(x, y, id) batches of samples lo..hi of the concatenated splits, in stored order, padded per batch."""
    ds = TokenBatches([read_split(data_dir, s) for s in splits], pad_id)
    hi = len(ds) if hi is None else min(hi, len(ds))
    for i in range(lo, hi, batch_size):
        yield ds[torch.arange(i, min(i + batch_size, hi))]
