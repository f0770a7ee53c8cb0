"""Word swaps for the text transfer set (Tang et al. 2019 without a tagger): frequent single-token words swap
for their nearest words in the teacher's embedding space; seeded, on the stored ids, with n-grams and masks."""

import numpy as np
import pytest
import torch

from kdflow.config import validate
from kdflow.data import text_augment as A
from kdflow.data.module import load_info
from kdflow.data.tokenized import load_tokenizer, read_split, split_texts
from kdflow.errors import KdflowError
from kdflow.stages import prepare
from tests.support.text_fixtures import NEG, POS, text_params, write_bert, write_csv


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """A tiny BERT whose word embeddings put each sentiment list in its own tight cluster (and 'film'~'movie')."""
    path = write_bert(tmp_path_factory.mktemp("hf") / "bert", num_labels=2, id2label={0: "neg", 1: "pos"})
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path / "model.safetensors"))
    key = next(k for k in weights if k.endswith("word_embeddings.weight"))
    tok = load_tokenizer(path)
    table = torch.randn(weights[key].shape, generator=torch.Generator().manual_seed(0))
    for words, centre in ((POS, 5.0), (NEG, -5.0), (["film", "movie"], 0.0)):
        ids = tok.convert_tokens_to_ids(words)
        table[ids] = table[ids] * 0.1 + centre * (torch.arange(table.shape[1]) % 2 * 2 - 1)
    weights[key] = table
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def prep(tmp_path, hf, name="data", **text):
    raw = text_params(tmp_path, write_csv(tmp_path / "d.csv", 60), hf, {"source": {"uri": str(hf)}})
    raw["data"].update(val_size=10, test_size=10)
    raw["data"]["text"].update(text)
    out = tmp_path / name
    prepare.run(validate(raw), {}, {"data": out})
    return out


def test_swaps_replace_single_token_words_by_embedding_neighbours_seeded(tmp_path, hf):
    data = prep(tmp_path, hf, mask_copies=2, mask_prob=0.0, swap_prob=0.5, swap_neighbours=3)
    train, tr = read_split(data, "train"), read_split(data, "transfer")
    assert load_info(data)["counts"]["transfer"] == 80 and (tr["y"] == -1).all()
    assert np.array_equal(tr["offsets"], np.concatenate([[0], np.cumsum(np.tile(np.diff(train["offsets"]), 2))]))
    before, after = np.tile(train["tokens"], 2), tr["tokens"]
    changed = before != after
    assert 0.2 < changed.sum() / np.isin(before, range(5, 40)).sum() < 0.6  # about swap_prob of the words
    assert not np.isin(after[changed], [0, 1, 2, 3, 4]).any()  # never to or from a special token
    tok = load_tokenizer(hf)
    pos, neg = set(tok.convert_tokens_to_ids(POS)), set(tok.convert_tokens_to_ids(NEG))
    pairs = list(zip(before[changed].tolist(), after[changed].tolist()))
    within = [a in pos and b in pos or a in neg and b in neg for a, b in pairs if a in pos | neg]
    assert within and all(within)  # the nearest words of a sentiment word are words of its own cluster
    again = read_split(prep(tmp_path, hf, "again", mask_copies=2, mask_prob=0.0, swap_prob=0.5,
                            swap_neighbours=3), "transfer")
    assert np.array_equal(again["tokens"], after)  # seeded: the same copies every time
    texts = split_texts(data, "transfer")[0]
    assert texts[0].startswith("[CLS]") and len(texts) == 80  # the swapped words decoded, for people


def test_swaps_combine_with_ngrams_and_masks_and_explain_a_missing_table(tmp_path, hf):
    data = prep(tmp_path, hf, mask_copies=3, mask_prob=0.1, ngram_prob=0.5, swap_prob=0.3)
    train, tr = read_split(data, "train"), read_split(data, "transfer")
    lengths = np.diff(tr["offsets"])
    assert (lengths <= np.tile(np.diff(train["offsets"]), 3)).all() and (lengths < np.tile(
        np.diff(train["offsets"]), 3)).any() and (tr["tokens"] == 4).any()
    assert (tr["tokens"][tr["offsets"][:-1]] == 2).all() and (tr["tokens"][tr["offsets"][1:] - 1] == 3).all()
    with pytest.raises(KdflowError, match="no word-embedding table"):
        prep(tmp_path, hf, "bad", mask_copies=1, mask_prob=0.0, swap_prob=0.3, swap_embeddings=str(tmp_path))


def test_single_word_tokens_skip_word_pieces():
    tokens = np.array([2, 10, 11, 12, 3])
    words = [[None, 0, 1, 1, None]]  # word 1 is two pieces: neither swaps
    assert A.single_word_tokens(tokens, np.array([0, 5]), words).tolist() == [False, True, False, False, False]
