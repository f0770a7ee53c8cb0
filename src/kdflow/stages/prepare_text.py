"""Stage `prepare` for a text source (`data.text` set): read, clean, split, tokenize once, write ragged splits.

Same split plan as the other backends (`prepare.plan`), so ids are stable; the transfer split is
the unlabeled `data.text.transfer` source, or (without one) a held-back part of the labeled pool.
The tokenizer is saved into the dataset (`tokenizer/`) and travels with every model trained on it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from kdflow.config import Params
from kdflow.data import text as T
from kdflow.data.module import UNLABELED
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
    splits = {}
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
        splits[name] = (arrs, truncated, T.digest_texts(sa, sb))
        ticker.update(len(pos), name)
    if t.mask_copies:
        splits["transfer"] = _with_masked(splits, tok, t, d.seed)
        ticker.update(0, "masked copies")
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
    ticker.finish(f"skipped {raw.skipped['count']}")

    def write(tmp: Path) -> None:
        for name, (arrs, _, _) in splits.items():
            np.savez(tmp / f"{name}.npz", **arrs)
        tok.save_pretrained(str(tmp / T.TOKENIZER_DIR))
    return _finish(cfg, info, outputs, write)


def _with_masked(splits: dict, tok, t, seed: int) -> tuple[dict, int, np.ndarray]:
    """The transfer split extended with masked copies of the train samples (new ids after every other id)."""
    if tok.mask_token_id is None:
        from kdflow.errors import KdflowError

        raise KdflowError(f"data.text.mask_copies: tokenizer {t.tokenizer} has no mask token")
    train = splits["train"][0]
    tokens, offsets = T.mask_copies(train["tokens"], train["offsets"], t.mask_copies, t.mask_prob,
                                    tok.mask_token_id, set(tok.all_special_ids) - {tok.unk_token_id}, seed)
    n = len(offsets) - 1
    start = 1 + max(int(v[0]["id"].max()) for v in splits.values() if len(v[0]["id"]))
    texts = tok.batch_decode([tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(n)],
                             skip_special_tokens=False)
    text, text_off = T.encode_strings(texts)
    masked = {"tokens": tokens, "offsets": offsets, "y": np.full(n, UNLABELED, np.int64),
              "id": np.arange(start, start + n, dtype=np.int64), "text": text, "text_offsets": text_off}
    if "transfer" not in splits:
        return masked, 0, T.digest_texts(texts, None)
    old, truncated, digests = splits["transfer"]
    merged = {"tokens": np.concatenate([old["tokens"], tokens]),
              "offsets": np.concatenate([old["offsets"], offsets[1:] + old["offsets"][-1]]),
              "y": np.concatenate([old["y"], masked["y"]]), "id": np.concatenate([old["id"], masked["id"]])}
    texts_old = T.decode_strings(old["text"], old["text_offsets"])
    merged["text"], merged["text_offsets"] = T.encode_strings(texts_old + texts)
    if "pair" in old:  # pair tasks: the masked copies keep the whole pair in `text` (decoded ids)
        merged["pair"], merged["pair_offsets"] = T.encode_strings(T.decode_strings(old["pair"], old["pair_offsets"])
                                                                  + [""] * n)
    return merged, truncated, np.concatenate([digests, T.digest_texts(texts, None)])
