"""Word swaps for the text transfer set (Tang et al. 2019's third augmentation), without a POS tagger.

Tang et al. replace a word, with chance p_pos, by another word of the same part of speech. With no tagger,
kdflow swaps among the **frequent single-token words** of the train texts, each for one of its nearest
neighbours in the teacher's input word-embedding space (cosine): neighbours there mostly share the word's
syntactic role ("film"/"movie", "good"/"great"/"nice", "was"/"is"), which is what the POS constraint buys.
A swap is one vocabulary id for another, so lengths and word boundaries stay as stored and the other
operations (n-gram cut, masking) apply after it unchanged. The teacher labels the result in soft_targets,
so a swap that flips the sentiment ("good" → "bad") is still a correctly labelled transfer sample.

The embeddings are read from the `*.safetensors` of a Hugging Face model dir (`data.text.swap_embeddings`,
by default the tokenizer's dir — usually the teacher's own encoder): the one 2-D tensor named like a word
embedding table with a row for every token id. Nothing is downloaded; nothing is unpickled.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from kdflow.errors import KdflowError

EMBEDDING_NAMES = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "shared.weight")
WORD_PREFIXES = ("Ġ", "▁")  # byte-level BPE / SentencePiece word-start marks


def word_embeddings(path: str | Path, vocab_size: int) -> np.ndarray:
    """The input word-embedding table (vocab × dim, float32) of the model in `path` (a dir or a .safetensors)."""
    from safetensors import safe_open

    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    for f in files:
        with safe_open(str(f), framework="np") as st:
            for key in st.keys():
                if key.endswith(EMBEDDING_NAMES):
                    table = st.get_tensor(key)
                    if table.ndim == 2 and table.shape[0] >= vocab_size:
                        return table.astype(np.float32)
    raise KdflowError(f"data.text.swap_prob: no word-embedding table ({' / '.join(EMBEDDING_NAMES)}, ≥ {vocab_size} "
                      f"rows) in the .safetensors of {path}; set data.text.swap_embeddings to the teacher's model dir")


def single_word_tokens(tokens: np.ndarray, offsets: np.ndarray, word_ids: list[list[int | None]]) -> np.ndarray:
    """Per stored token: True where it is a whole word by itself (its word id occurs once in the sample)."""
    out = np.zeros(len(tokens), bool)
    for i, words in enumerate(word_ids):
        if len(words) != offsets[i + 1] - offsets[i]:
            raise KdflowError(f"word swaps: sample {i} re-tokenizes to {len(words)} tokens, stored "
                              f"{offsets[i + 1] - offsets[i]}")
        seen = Counter(w for w in words if w is not None)
        out[offsets[i]:offsets[i + 1]] = [w is not None and seen[w] == 1 for w in words]
    return out


def swap_table(tok, tokens: np.ndarray, single: np.ndarray, embeddings: np.ndarray, vocab: int,
               neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """(word ids, their `neighbours` nearest word ids): the `vocab` most frequent alphabetic single-token words
    of `tokens` (the train split), neighbours among the same words by cosine of their embeddings."""
    special = set(tok.all_special_ids)
    counts = Counter(int(t) for t in tokens[single] if int(t) not in special)
    names = tok.convert_ids_to_tokens(list(counts))
    alpha = {i for i, n in zip(counts, names) if n.lstrip("".join(WORD_PREFIXES)).isalpha()}
    ids = np.array(sorted((i for i in counts if i in alpha), key=lambda i: (-counts[i], i))[:vocab], np.int64)
    k = min(neighbours, len(ids) - 1)
    if k < 1:
        raise KdflowError(f"word swaps: {len(ids)} frequent single-token words in the train split; need at least 2")
    e = embeddings[ids]
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    near = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return ids, ids[near]


def swap_words(tokens: np.ndarray, single: np.ndarray, table: tuple[np.ndarray, np.ndarray], prob: float,
               seed: int) -> tuple[np.ndarray, int]:
    """Each single-token word of the table replaced, with chance `prob`, by one of its neighbours (uniform);
    returns the new ids (same length) and the count of swaps."""
    ids, near = table
    row = np.full(int(max(tokens.max(initial=0), ids.max()) + 1), -1, np.int64)
    row[ids] = np.arange(len(ids))
    r = row[tokens]
    rng = np.random.default_rng(seed)
    hit = single & (r >= 0) & (rng.random(len(tokens)) < prob)
    out = tokens.copy()
    out[hit] = near[r[hit], rng.integers(0, near.shape[1], int(hit.sum()))]
    return out.astype(tokens.dtype), int(hit.sum())
