"""Text as a modality: sources, tokenization once in prepare, ragged storage + per-batch padding, text
networks, Hugging Face text teachers (imported, encoder + fresh head, layer subset). Tiny local fixtures."""

import json

import numpy as np
import pytest
import torch

from kdflow.config import ModelSource, validate
from kdflow.data.module import KDDataModule
from kdflow.data.reader import load_info, load_split
from kdflow.data.tokenized import TokenBatches, pad, read_split, split_texts
from kdflow.errors import KdflowError
from kdflow.models import build_model, load_model
from kdflow.models.imported import import_model
from kdflow.stages import prepare
from tests.support.text_fixtures import sentences, text_params, write_bert, write_csv


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return write_bert(tmp_path_factory.mktemp("hf") / "bert", num_labels=2, id2label={0: "neg", 1: "pos"})


def cfg_for(tmp_path, hf, source, **data):
    raw = text_params(tmp_path, tmp_path / "unused.csv", hf, {"source": {"uri": str(hf)}})
    raw["data"]["source"] = source
    raw["data"].update(data)
    return validate(raw)


def prep(tmp_path, cfg):
    out = tmp_path / "data"
    prepare.run(cfg, {}, {"data": out})
    return out, load_info(out)


def test_csv_prepare_stores_ragged_ids_stats_and_tokenizer(tmp_path, hf):
    csv = write_csv(tmp_path / "d.csv", 120)
    data, info = prep(tmp_path, cfg_for(tmp_path, hf, f"csv:{csv}"))
    assert info["modality"] == "text" and info["classes"] == ["neg", "pos"]
    assert info["counts"] == {"train": 40, "val": 40, "test": 40}
    assert info["tokenizer"]["pad_id"] == 0 and info["tokenizer"]["vocab_size"] > 30
    stats = info["token_lengths"]["train"]
    assert 4 <= stats["mean"] <= stats["max"] <= 12 and stats["truncated"] == 0
    s = read_split(data, "train")
    assert len(s["offsets"]) == 41 and s["tokens"].dtype == np.int32 and len(s["tokens"]) == s["offsets"][-1]
    assert (data / "tokenizer" / "tokenizer.json").is_file()
    texts, _ = split_texts(data, "test")
    assert len(texts) == 40 and all(isinstance(t, str) and t for t in texts)
    # the ids are the tokenizer's own: decoding the stored ids gives the text back
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(data / "tokenizer"))
    first = s["tokens"][s["offsets"][0]:s["offsets"][1]].tolist()
    assert tok.decode(first, skip_special_tokens=True) == split_texts(data, "train")[0][0]


def test_max_length_truncates_from_the_chosen_side(tmp_path, hf):
    csv = write_csv(tmp_path / "d.csv", 60)
    cfg = cfg_for(tmp_path, hf, f"csv:{csv}", val_size=10, test_size=10)
    cfg.data.text.max_length, cfg.data.text.truncation_side = 5, "left"
    data, info = prep(tmp_path, cfg)
    s = read_split(data, "train")
    assert np.diff(s["offsets"]).max() == 5 and info["token_lengths"]["train"]["truncated"] > 0
    assert s["tokens"][s["offsets"][1] - 1] == info["tokenizer"]["sep_id"]  # left truncation keeps the end


@pytest.mark.parametrize("kind", ["tsv", "jsonl", "parquet", "datasets"])
def test_every_source_kind_with_integer_labels(tmp_path, hf, kind):
    import pandas as pd

    rows = [(t, int(y == "pos")) for t, y in sentences(60, seed=1)]
    df = pd.DataFrame(rows, columns=["sentence", "y"])
    path = tmp_path / f"d.{kind}"
    if kind == "tsv":
        df.to_csv(path, sep="\t", index=False)
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"sentence": t, "y": y}) + "\n" for t, y in rows))
    elif kind == "parquet":
        df.to_parquet(path)
    else:
        from datasets import Dataset

        Dataset.from_pandas(df).save_to_disk(str(path))
    cfg = cfg_for(tmp_path, hf, f"{kind}:{path}", label_column="y", val_size=10, test_size=10)
    cfg.data.text.column = "sentence"
    _, info = prep(tmp_path, cfg)
    assert info["classes"] == ["0", "1"] and sum(info["counts"].values()) == 60


def test_sentence_pairs_get_segment_ids_from_the_separator(tmp_path, hf):
    path = tmp_path / "pairs.csv"
    rows = [f"{a},{b},{int(ya == yb)}" for (a, ya), (b, yb) in zip(sentences(60, 2), sentences(60, 3))]
    path.write_text("premise,hypothesis,label\n" + "\n".join(rows) + "\n")
    cfg = cfg_for(tmp_path, hf, f"csv:{path}", val_size=10, test_size=10)
    cfg.data.text.column, cfg.data.text.pair_column = "premise", "hypothesis"
    data, info = prep(tmp_path, cfg)
    assert info["tokenizer"]["pair"] and split_texts(data, "train")[1] is not None
    from kdflow.models.text_nets import _token_types

    x = torch.tensor([[2, 10, 3, 11, 12, 3, 0]])
    assert _token_types(x, 3, True).tolist() == [[0, 0, 0, 1, 1, 1, 1]]


def test_bad_rows_fail_with_their_line_or_are_counted(tmp_path, hf):
    csv = write_csv(tmp_path / "d.csv", 60, extra=" ,pos\ngood film,maybe\n")
    with pytest.raises(KdflowError, match=r"line 62: empty or non-string text"):
        prep(tmp_path, cfg_for(tmp_path, hf, f"csv:{csv}", val_size=10, test_size=10))
    _, info = prep(tmp_path, cfg_for(tmp_path, hf, f"csv:{csv}", val_size=10, test_size=10, bad_samples="skip"))
    # 'maybe' becomes a third class name: names are taken from the data, so only the empty text is bad
    assert info["skipped"]["count"] == 1 and "line 62" in info["skipped"]["examples"][0]
    jl = tmp_path / "d.jsonl"
    jl.write_text(json.dumps({"text": "good", "label": 1}) + "\n" + json.dumps({"text": "bad", "label": -1}) + "\n")
    with pytest.raises(KdflowError, match=r"d.jsonl line 2: unknown label -1"):
        prep(tmp_path, cfg_for(tmp_path, hf, f"jsonl:{jl}"))


def test_text_params_are_validated(tmp_path, hf):
    raw = text_params(tmp_path, tmp_path / "d.csv", hf, {"source": {"uri": str(hf)}})
    raw["data"]["text"]["max_length"] = 2
    with pytest.raises(KdflowError, match="data.text.max_length"):
        validate(raw)
    raw["data"]["text"] = {"column": "text", "tokenizer": str(hf), "truncation_side": "middle"}
    with pytest.raises(KdflowError, match="truncation_side"):
        validate(raw)


def test_unlabeled_text_becomes_the_transfer_split(tmp_path, hf):
    csv = write_csv(tmp_path / "d.csv", 60)
    unl = tmp_path / "u.jsonl"
    unl.write_text("".join(json.dumps({"text": t}) + "\n" for t, _ in sentences(30, seed=9)))
    cfg = cfg_for(tmp_path, hf, f"csv:{csv}", val_size=10, test_size=10, transfer_size=25)
    cfg.data.text.transfer = f"jsonl:{unl}"
    data, info = prep(tmp_path, cfg)
    assert info["counts"]["transfer"] == 25 and info["counts"]["train"] == 40
    assert (read_split(data, "transfer")["y"] == -1).all()
    cfg.data.text.test = f"csv:{write_csv(tmp_path / 'dev.csv', 15, seed=5)}"
    _, info = prep(tmp_path, cfg)
    assert info["counts"]["test"] == 15 and info["counts"]["train"] == 50


def test_batches_are_padded_to_their_own_longest_sample(tmp_path, hf):
    tokens = np.array([2, 5, 3, 2, 5, 6, 7, 8, 3, 2, 3], np.int32)
    offsets = np.array([0, 3, 9, 11])
    assert pad(tokens, offsets, [0, 2], 0).shape == (2, 3)
    assert pad(tokens, offsets, [0, 1], 0).tolist() == [[2, 5, 3, 0, 0, 0], [2, 5, 6, 7, 8, 3]]
    csv = write_csv(tmp_path / "d.csv", 80)
    data, info = prep(tmp_path, cfg_for(tmp_path, hf, f"csv:{csv}", val_size=10, test_size=10))
    dm = KDDataModule(data, batch_size=8)
    x, y, ids = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.int64 and x.shape[0] == 8 and x.shape[1] == int((x != 0).sum(1).max())
    assert isinstance(dm.train_dataloader().dataset, TokenBatches)
    whole = load_split(data, "val")
    assert whole["x"].shape == (10, (whole["x"] != 0).sum(1).max())


@pytest.mark.parametrize("name,kwargs", [("text-bert", {"layers": 1, "hidden": 16, "heads": 2}),
                                         ("text-bilstm", {"embed": 8, "hidden": 8, "mlp": 8}),
                                         ("text-cnn", {"embed": 8, "channels": 8})])
def test_text_students_ignore_padding(name, kwargs):
    spec = {"name": name, "kwargs": kwargs, "input_shape": [32], "num_classes": 3, "mean": [0.0], "std": [1.0],
            "modality": "text", "text": {"vocab_size": 40, "pad_id": 0, "sep_id": 3, "pair": False}}
    torch.manual_seed(0)
    model = build_model(spec).eval()
    x = torch.tensor([[2, 10, 11, 12, 3], [2, 13, 3, 0, 0]])
    out = model(x)
    assert out.shape == (2, 3)
    longer = torch.cat([x, torch.zeros(2, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(model(longer), out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model(x[1:, :3]), out[1:], atol=1e-5, rtol=1e-4)


def text_info(tmp_path, hf):
    csv = write_csv(tmp_path / "d.csv", 60)
    return prep(tmp_path, cfg_for(tmp_path, hf, f"csv:{csv}", val_size=10, test_size=10))


def test_hf_sequence_classifier_imports_as_a_teacher(tmp_path, hf):
    data, info = text_info(tmp_path, hf)
    model, spec, _ = import_model(ModelSource(uri=str(hf)), info, "teacher")
    assert spec["name"] == "hf-text:" and spec["modality"] == "text"
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ref = AutoModelForSequenceClassification.from_pretrained(str(hf)).eval()
    enc = AutoTokenizer.from_pretrained(str(hf))(["good film", "the plot was bad and dull"], padding=True,
                                                   return_tensors="pt")
    torch.testing.assert_close(model(enc["input_ids"]), ref(**enc).logits)
    other = write_bert(tmp_path / "other", num_labels=2, id2label={0: "yes", 1: "no"})
    with pytest.raises(KdflowError, match="class names mismatch"):
        import_model(ModelSource(uri=str(other)), info, "teacher")
    three = write_bert(tmp_path / "three", num_labels=3)
    with pytest.raises(KdflowError, match="class count mismatch"):
        import_model(ModelSource(uri=str(three)), info, "teacher")


def test_bare_encoder_gets_a_head_and_layers_keeps_a_subset(tmp_path, hf):
    data, info = text_info(tmp_path, hf)
    enc = write_bert(tmp_path / "enc", num_labels=None, layers=3)
    model, spec, _ = import_model(ModelSource(uri=str(enc)), info, "teacher.init_from")
    assert model(torch.tensor([[2, 6, 3]])).shape == (1, 2)
    src = ModelSource(uri=f"layers:{hf}", kwargs={"layers": [1]})
    cut, cspec, _ = import_model(src, info, "student.init_from")
    assert cspec["kwargs"]["config"]["num_hidden_layers"] == 1
    teacher, _, _ = import_model(ModelSource(uri=str(hf)), info, "teacher")
    t_layers = teacher.net.model.bert.encoder.layer
    torch.testing.assert_close(cut.net.model.bert.encoder.layer[0].state_dict(), t_layers[1].state_dict())
    # the cut model round-trips through the model directory
    from kdflow.models import save_model

    save_model(cut, tmp_path / "cut", cspec)
    again, _ = load_model(tmp_path / "cut")
    x = torch.tensor([[2, 6, 7, 3]])
    torch.testing.assert_close(again(x), cut.eval()(x))
    with pytest.raises(KdflowError, match="out of range"):
        import_model(ModelSource(uri=f"layers:{hf}", kwargs={"layers": [5]}), info, "student.init_from")


def test_server_tokenizes_sentences_and_rejects_bad_instances(tmp_path, hf):
    """A text model directory served over real HTTP on 127.0.0.1: sentences in, labels + probabilities out."""
    import httpx

    from kdflow.serving.app import create_app
    from kdflow.serving.config import ServeConfig
    from kdflow.stages.common import attach_tokenizer
    from tests.support.live import serve

    data, info = text_info(tmp_path, hf)
    model, spec, _ = import_model(ModelSource(uri=str(hf)), info, "teacher")
    from kdflow.models import save_model

    save_model(model, tmp_path / "m", spec, version="3")
    attach_tokenizer(tmp_path / "m", data)
    with serve(create_app(ServeConfig(model=str(tmp_path / "m"), max_request_items=4))) as url:
        r = httpx.post(f"{url}/predict", json={"instances": ["good film", "the plot was dull and bad and sad"]})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        from transformers import AutoTokenizer

        enc = AutoTokenizer.from_pretrained(str(hf))(["good film", "the plot was dull and bad and sad"],
                                                       padding=True, return_tensors="pt")
        want = torch.softmax(model(enc["input_ids"]), 1)
        assert [p["class"] for p in preds] == [info["classes"][i] for i in want.argmax(1).tolist()]
        torch.testing.assert_close(torch.tensor([p["probabilities"] for p in preds]), want, atol=1e-4, rtol=1e-3)
        for body, status, words in [({"instances": []}, 422, "non-empty list"),
                                    ({"instances": ["fine", 3]}, 422, "instance 1 must be a non-empty string"),
                                    ({"instances": ["  "]}, 422, "instance 0"),
                                    ({"instances": ["a"] * 5}, 413, "limit is 4"),
                                    ({"inputs": [[1, 2]]}, 422, "unknown field")]:
            r = httpx.post(f"{url}/predict", json=body)
            assert r.status_code == status and words in r.json()["error"], (body, r.text)


def test_masked_copies_extend_the_transfer_split(tmp_path, hf):
    csv = write_csv(tmp_path / "d.csv", 60)
    cfg = cfg_for(tmp_path, hf, f"csv:{csv}", val_size=10, test_size=10)
    cfg.data.text.mask_copies, cfg.data.text.mask_prob = 2, 0.3
    data, info = prep(tmp_path, cfg)
    train, tr = read_split(data, "train"), read_split(data, "transfer")
    assert info["counts"]["transfer"] == 2 * info["counts"]["train"] == 80
    assert (tr["y"] == -1).all() and len(set(tr["id"]) & set(train["id"])) == 0
    assert np.array_equal(np.diff(tr["offsets"])[:40], np.diff(train["offsets"]))
    mask_id = 4  # [MASK] in the test vocab
    masked = tr["tokens"] == mask_id
    assert 0.1 < masked.mean() < 0.4 and not np.isin(tr["tokens"][masked], [2, 3]).any()
    same = tr["tokens"][~masked] == np.tile(train["tokens"], 2)[~masked]
    assert same.all()  # only masking changed the ids; [CLS]/[SEP] never masked
    assert (tr["tokens"][tr["offsets"][:-1]] == 2).all()


def test_text_profile_compiles_to_the_same_kubeflow_pipeline(tmp_path):
    """No pipeline code specific to text: the SST-2 profile compiles with the one pipeline, its data.text
    section carried in the params every step reads."""
    import yaml

    from kdflow.kfp.entrypoints import compile_pipeline
    from tests.helpers import REPO

    raw = yaml.safe_load((REPO / "benchmarks" / "profiles" / "text-sst2.yaml").read_text())
    out = compile_pipeline(raw, tmp_path / "p.yaml", image="kdflow:test")
    assert "models/all-MiniLM-L6-v2" in out.read_text()


@pytest.mark.parametrize("name,kwargs", [("text-bert", {"layers": 1, "hidden": 16, "heads": 2}),
                                         ("text-cnn", {"embed": 8, "channels": 8}),
                                         ("text-bilstm", {"embed": 8, "hidden": 8, "mlp": 8})])
def test_onnx_export_takes_ids_of_any_length_with_the_tokenizer_beside_it(tmp_path, hf, name, kwargs):
    from kdflow.compress import main as compress_main
    from kdflow.compress import onnx_session
    from kdflow.models import save_model

    spec = {"name": name, "kwargs": kwargs, "input_shape": [32], "num_classes": 2, "mean": [0.0], "std": [1.0],
            "classes": ["neg", "pos"], "modality": "text",
            "text": {"vocab_size": 40, "pad_id": 0, "sep_id": 3, "pair": False}}
    torch.manual_seed(0)
    model = build_model(spec).eval()
    save_model(model, tmp_path / "m", spec)
    import shutil

    shutil.copytree(hf, tmp_path / "m" / "tokenizer")
    assert compress_main(["--model", str(tmp_path / "m"), "--out", str(tmp_path / "onnx")]) == 0
    doc = json.loads((tmp_path / "onnx" / "compress.json").read_text())
    assert doc["onnx_max_abs_dlogit"] < 1e-4 and (tmp_path / "onnx" / "tokenizer" / "vocab.txt").is_file()
    x = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 14, 3, 0, 0, 0]])
    got = onnx_session(tmp_path / "onnx" / "model.onnx").run(None, {"input_ids": x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-4)


def test_ngram_sampling_cuts_copies_to_whole_word_ngrams_that_the_teacher_labels(tmp_path, hf):
    from kdflow.stages import soft_targets, train_teacher

    csv = write_csv(tmp_path / "d.csv", 60)
    cfg = cfg_for(tmp_path, hf, f"csv:{csv}", val_size=10, test_size=10)
    cfg.data.text.mask_copies, cfg.data.text.mask_prob, cfg.data.text.ngram_prob = 3, 0.0, 1.0
    cfg.data.text.ngram_max = 3
    data, info = prep(tmp_path, cfg)
    train, tr = read_split(data, "train"), read_split(data, "transfer")
    assert info["counts"]["transfer"] == 3 * 40 and (tr["y"] == -1).all()
    words = [t.split() for t in split_texts(data, "train")[0]] * 3
    cut = split_texts(data, "transfer")[0]
    for i, (w, c) in enumerate(zip(words, cut)):
        got = c.replace("[CLS]", "").replace("[SEP]", "").split()
        assert 1 <= len(got) <= 3 and any(w[j:j + len(got)] == got for j in range(len(w))), (w, c)
        ids = tr["tokens"][tr["offsets"][i]:tr["offsets"][i + 1]]
        assert ids[0] == 2 and ids[-1] == 3  # each cut keeps its own [CLS] ... [SEP]
    assert (np.diff(tr["offsets"]) <= np.tile(np.diff(train["offsets"]), 3)).all()
    # with p_ng = 0.5 and masking, about half the copies are cut and masks appear in the rest
    cfg.data.text.ngram_prob, cfg.data.text.mask_prob = 0.5, 0.2
    data, _ = prep(tmp_path, cfg)
    tr = read_split(data, "transfer")
    shorter = np.diff(tr["offsets"]) < np.tile(np.diff(train["offsets"]), 3)
    assert 0.3 < shorter.mean() < 0.8 and (tr["tokens"] == 4).any()
    # the teacher labels the new samples: the transfer split goes through soft targets like any other
    teacher, store = tmp_path / "teacher", tmp_path / "st"
    train_teacher.run(cfg, {"data": data}, {"model": teacher})
    soft_targets.run(cfg, {"data": data, "teacher": teacher}, {"soft_targets": store})
    from kdflow.soft_target_store import count_missing, lookup_table

    assert count_missing(lookup_table(store), tr["id"]) == 0
    raw = text_params(tmp_path, csv, hf, {"source": {"uri": str(hf)}})
    raw["data"]["text"].update(mask_copies=2, mask_prob=0.0)
    with pytest.raises(KdflowError, match="mask_prob > 0 or ngram_prob > 0"):
        validate(raw)
    raw["data"]["text"].update(ngram_prob=0.5, pair_column="other")
    with pytest.raises(KdflowError, match="single-sentence tasks"):
        validate(raw)


def test_a_student_vocabulary_tokenizes_the_same_samples_by_id(tmp_path, hf):
    from transformers import AutoTokenizer

    from kdflow.data.reader import for_student

    csv = write_csv(tmp_path / "d.csv", 60)
    cfg = cfg_for(tmp_path, hf, f"csv:{csv}", val_size=10, test_size=10)
    cfg.data.text.student_vocab, cfg.data.text.mask_copies, cfg.data.text.ngram_prob = 120, 1, 0.5
    data, info = prep(tmp_path, cfg)
    view = for_student(data)
    assert view == data / "student" and for_student(view) == view
    sinfo = load_info(view)
    assert sinfo["tokenizer"]["vocab_size"] != info["tokenizer"]["vocab_size"] and sinfo["hash"] != info["hash"]
    assert info["student_tokenizer"]["vocab_size"] == sinfo["tokenizer"]["vocab_size"]
    stok = AutoTokenizer.from_pretrained(str(view / "tokenizer"))
    for split in ("train", "val", "test", "transfer"):
        t, s = read_split(data, split), read_split(view, split)
        assert np.array_equal(t["id"], s["id"]) and np.array_equal(t["y"], s["y"])
        texts = split_texts(view, split)[0]
        for i in (0, len(texts) - 1):  # the student's ids are its own tokenizer's encoding of the same text
            ids = s["tokens"][s["offsets"][i]:s["offsets"][i + 1]].tolist()
            if split != "transfer":
                assert ids == stok(texts[i])["input_ids"]
            assert "[CLS]" not in stok.decode(ids[1:-1])  # augmented copies: no doubled special tokens
    # the masked/cut copies keep [MASK] as the student's own mask token
    tr = read_split(view, "transfer")
    assert (tr["tokens"] == stok.mask_token_id).any() or cfg.data.text.mask_prob == 0
    raw = text_params(tmp_path, csv, hf, {"source": {"uri": str(hf)}})
    raw["data"]["text"].update(student_vocab=500, student_tokenizer=str(hf))
    with pytest.raises(KdflowError, match="not both"):
        validate(raw)


def test_onnx_export_of_an_imported_hugging_face_teacher(tmp_path, hf):
    """The imported teacher (`hf-text:`, rebuilt from its config) exports like a registry text model."""
    from kdflow.compress import main as compress_main
    from kdflow.compress import onnx_session
    from kdflow.models import save_model
    from kdflow.stages.common import attach_tokenizer

    data, info = text_info(tmp_path, hf)
    model, spec, _ = import_model(ModelSource(uri=str(hf)), info, "teacher")
    save_model(model, tmp_path / "m", spec)
    attach_tokenizer(tmp_path / "m", data)
    assert compress_main(["--model", str(tmp_path / "m"), "--out", str(tmp_path / "onnx")]) == 0
    doc = json.loads((tmp_path / "onnx" / "compress.json").read_text())
    assert doc["onnx_max_abs_dlogit"] < 1e-4 and (tmp_path / "onnx" / "tokenizer" / "tokenizer.json").is_file()
    x = torch.tensor([[2, 10, 11, 12, 13, 3, 0, 0, 0], [2, 14, 3, 0, 0, 0, 0, 0, 0]])
    got = onnx_session(tmp_path / "onnx" / "model.onnx").run(None, {"input_ids": x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-4)


def test_born_again_refuses_text_data_with_a_clear_error(tmp_path, hf):
    from kdflow.stages import born_again

    data, _ = text_info(tmp_path, hf)
    cfg = cfg_for(tmp_path, hf, "csv:unused.csv")
    with pytest.raises(KdflowError, match="born_again: .* is text data"):
        born_again.run(cfg, {"data": data, "teacher": hf}, {"generations": tmp_path / "gens"})
    assert not (tmp_path / "gens").exists()
