"""Stage `prepare` for a text source (`data.text` set): read, clean, split, tokenize once, write ragged splits.

Same split plan as the other backends (`prepare.plan`), so ids are stable; the transfer split is
the unlabeled `data.text.transfer` source, or (without one) a held-back part of the labeled pool.
The tokenizer is saved into the dataset (`tokenizer/`) and travels with every model trained on it.

A student with its own vocabulary (`data.text.student_tokenizer` dir, or `student_vocab`: a tokenizer of
the teacher's kind trained on the train texts) gets `student/`: the same splits, ids, labels and texts,
tokenized with its tokenizer, as a dataset directory of its own (`T.for_student` sends the student's
stages there). Soft targets stay keyed by sample id, so nothing else changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from kdflow.config import Params
from kdflow.data import tokenized as T
from kdflow.data.reader import UNLABELED
from kdflow.io import write_json
from kdflow.progress import Ticker
from kdflow.stages.prepare import _check_labels, _check_leakage, _finish, _manifest, plan


def run_text(cfg: Params, outputs: dict[str, Path]) -> dict:
    d, t = cfg.data, cfg.data.text
    ticker = Ticker("prepare (read + tokenize text)", every=0)
    raw = T.load_text(d)
    tok = T.load_tokenizer(t.tokenizer, t.truncation_side)
    n_gen = len(raw.transfer[0]) if raw.transfer is not None and d.transfer_size else 0
    parts = {"pool": (raw.a, raw.b, raw.y), "test": raw.test,
             "generated": (*raw.transfer, None) if raw.transfer is not None else None}
    splits, plain = {}, {}
    for name, (part, pos, ids) in plan(raw.y, None if raw.test is None else len(raw.test[2]),
                                       min(n_gen, d.transfer_size), d).items():
        a, b, y = parts[part]
        sa = [a[i] for i in pos]
        sb = [b[i] for i in pos] if b is not None else None
        labels = np.full(len(pos), UNLABELED, np.int64) if name == "transfer" else y[pos]
        tokens, offsets, truncated = T.tokenize(tok, sa, sb, t.max_length)
        text, text_off = T.encode_strings(sa)
        arrs = {"tokens": tokens, "offsets": offsets, "y": labels.astype(np.int64), "id": np.asarray(ids, np.int64),
                "text": text, "text_offsets": text_off}
        if sb is not None:
            arrs["pair"], arrs["pair_offsets"] = T.encode_strings(sb)
        splits[name], plain[name] = (arrs, truncated, T.digest_texts(sa, sb)), (sa, sb)
        ticker.update(len(pos), name)
    if t.mask_copies:
        splits["transfer"], (na, nb) = _with_augmented(splits, tok, t, d.seed)
        old_a, old_b = plain.get("transfer", ([], [] if t.pair_column else None))
        plain["transfer"] = (old_a + na, old_b + nb if nb is not None else None)
        ticker.update(0, "augmented copies")
    labels = {k: v[0]["y"] for k, v in splits.items()}
    _check_labels(labels, len(raw.classes))
    names = list(splits)
    dupes = {f"{x}~{y}": len(set(splits[x][2].tolist()) & set(splits[y][2].tolist()))
             for i, x in enumerate(names) for y in names[i + 1:]}
    _check_leakage(dupes, d)
    h = hashlib.sha256()
    for name, (arrs, _, _) in splits.items():
        h.update(name.encode())
        for k in ("tokens", "offsets", "y", "id"):
            h.update(arrs[k].tobytes())
    meta = T.tokenizer_meta(tok, t)
    extra = {"format": "memory", "modality": T.MODALITY, "tokenizer": meta,
             "text_columns": [t.column, *([t.pair_column] if t.pair_column else [])],
             "token_lengths": {k: T.length_stats(v[0]["offsets"], v[1]) for k, v in splits.items()},
             "skipped": raw.skipped}
    info = _manifest(d, h.hexdigest(), [t.max_length], raw.classes, [0.0], [1.0], labels, dupes, extra)
    view = _student_view(t, tok, splits, plain, info) if t.student_tokenizer or t.student_vocab else None
    if view is not None:
        info["student_view"] = T.STUDENT_VIEW
        ticker.update(0, "student tokenization")
    ticker.finish(f"skipped {raw.skipped['count']}")

    def write(tmp: Path) -> None:
        _write_splits(tmp, {k: v[0] for k, v in splits.items()}, tok)
        if view is not None:
            (tmp / T.STUDENT_VIEW).mkdir()
            _write_splits(tmp / T.STUDENT_VIEW, view[0], view[1])
            write_json(tmp / T.STUDENT_VIEW / "dataset.json", view[2])
    return _finish(cfg, info, outputs, write)


def _write_splits(tmp: Path, splits: dict[str, dict], tok) -> None:
    for name, arrs in splits.items():
        np.savez(tmp / f"{name}.npz", **arrs)
    tok.save_pretrained(str(tmp / T.TOKENIZER_DIR))


def _student_view(t, tok, splits: dict, plain: dict, info: dict) -> tuple[dict, object, dict]:
    """The splits tokenized with the student's tokenizer (a given dir, or one trained on the train texts with the
    teacher tokenizer's algorithm and normalization), with the manifest of that dataset view."""
    if t.student_tokenizer:
        stok = T.load_tokenizer(t.student_tokenizer, t.truncation_side)
        source = t.student_tokenizer
    else:
        a, b = plain["train"]
        texts = a + (b or [])
        stok = tok.train_new_from_iterator((texts[i:i + 1000] for i in range(0, len(texts), 1000)),
                                           vocab_size=t.student_vocab, length=len(texts))
        stok.truncation_side = t.truncation_side
        source = f"trained on the train texts: {type(tok).__name__} algorithm, vocab_size {t.student_vocab}"
    out, lengths, h = {}, {}, hashlib.sha256(info["hash"].encode())
    for name, (arrs, _, _) in splits.items():
        a, b = plain[name]
        tokens, offsets, truncated = T.tokenize(stok, a, b, t.max_length)
        out[name] = {**arrs, "tokens": tokens, "offsets": offsets}
        lengths[name] = T.length_stats(offsets, truncated)
        h.update(tokens.tobytes())
        h.update(offsets.tobytes())
    meta = {**T.tokenizer_meta(stok, t), "path": source}
    view = {**info, "hash": h.hexdigest(), "tokenizer": meta, "token_lengths": lengths,
            "view": {"of": "..", "tokenization": "student", "teacher_tokenizer": info["tokenizer"]["path"]}}
    info["student_tokenizer"] = {k: meta[k] for k in ("path", "class", "vocab_size")}
    return out, stok, view


def _with_augmented(splits: dict, tok, t, seed: int) -> tuple[tuple[dict, int, np.ndarray], tuple]:
    """The transfer split extended with augmented copies of the train samples (new ids after every other id):
    n-gram sampling on whole words (`ngram_prob`), then masking (`mask_prob`), on the stored ids."""
    if t.mask_prob and tok.mask_token_id is None:
        from kdflow.errors import KdflowError

        raise KdflowError(f"data.text.mask_prob: tokenizer {t.tokenizer} has no mask token")
    train = splits["train"][0]
    tokens, offsets = np.tile(train["tokens"], t.mask_copies), np.concatenate(
        [[0], np.cumsum(np.tile(np.diff(train["offsets"]), t.mask_copies))]).astype(np.int64)
    if t.ngram_prob:
        texts = T.decode_strings(train["text"], train["text_offsets"])
        enc = tok(texts, truncation=True, max_length=t.max_length)  # the stored ids again, with word ids
        words = [enc.word_ids(i) for i in range(len(texts))]
        tokens, offsets = T.ngram_copies(train["tokens"], train["offsets"], words, t.mask_copies, t.ngram_prob,
                                         t.ngram_max, seed)
    if t.mask_prob:
        tokens, offsets = T.mask_copies(tokens, offsets, 1, t.mask_prob, tok.mask_token_id,
                                        set(tok.all_special_ids) - {tok.unk_token_id}, seed)
    n = len(offsets) - 1
    start = 1 + max(int(v[0]["id"].max()) for v in splits.values() if len(v[0]["id"]))
    texts = tok.batch_decode([tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(n)],
                             skip_special_tokens=False)
    text, text_off = T.encode_strings(texts)
    masked = {"tokens": tokens, "offsets": offsets, "y": np.full(n, UNLABELED, np.int64),
              "id": np.arange(start, start + n, dtype=np.int64), "text": text, "text_offsets": text_off}
    plain = T.plain_texts(tok, tokens, offsets, t.pair_column is not None)  # the copies for another tokenizer
    if "transfer" not in splits:
        return (masked, 0, T.digest_texts(texts, None)), plain
    old, truncated, digests = splits["transfer"]
    merged = {"tokens": np.concatenate([old["tokens"], tokens]),
              "offsets": np.concatenate([old["offsets"], offsets[1:] + old["offsets"][-1]]),
              "y": np.concatenate([old["y"], masked["y"]]), "id": np.concatenate([old["id"], masked["id"]])}
    texts_old = T.decode_strings(old["text"], old["text_offsets"])
    merged["text"], merged["text_offsets"] = T.encode_strings(texts_old + texts)
    if "pair" in old:  # pair tasks: the masked copies keep the whole pair in `text` (decoded ids)
        merged["pair"], merged["pair_offsets"] = T.encode_strings(T.decode_strings(old["pair"], old["pair_offsets"])
                                                                  + [""] * n)
    return (merged, truncated, np.concatenate([digests, T.digest_texts(texts, None)])), plain
