"""Sentence-embedding distillation (`task: embedding`): the losses, the `encoder:` teacher, embeddings in the
soft-target store, the linear probe, the stage chain on tiny data, and the config's refusals. Tiny local
fixtures (a random 2-layer, 32-wide BERT encoder; generated sentences)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdflow.config import validate
from kdflow.errors import KdflowError
from kdflow.evaluation.embedding import cosines, embed_split, probe
from kdflow.losses import LOSSES
from kdflow.models import build_model, load_model
from kdflow.models.text_embed import pca_word_embeddings, pool, sentence_config
from kdflow.soft_target_store import read_store
from kdflow.stages.registry import run_pipeline, run_stage
from tests.support.text_fixtures import text_params, write_bert, write_csv

STUDENT = {"model": {"name": "text-embed", "kwargs": {"layers": 1, "hidden": 16, "heads": 2, "dim": 32}},
           "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "progress_bar": False}}


def embed_raw(tmp, normalize=True, **distill):
    enc = write_bert(tmp / "enc", num_labels=None)
    if normalize:  # a sentence-transformers directory: mean pooling, then Normalize
        (enc / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
        (enc / "1_Pooling").mkdir()
        (enc / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
             "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    raw = text_params(tmp, write_csv(tmp / "d.csv", 300), enc, {"source": {"uri": f"encoder:{enc}"}}, STUDENT)
    raw["task"] = "embedding"
    raw["distill"] = {"loss": "embedding_cosine", "word_embeddings": "teacher_pca",
                      "train": {"epochs": 5, "batch_size": 32, "lr": 0.01, "progress_bar": False}, **distill}
    return raw, enc


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The default pipeline run on the tiny embedding profile (prepare → … → evaluate)."""
    tmp = tmp_path_factory.mktemp("embed")
    raw, enc = embed_raw(tmp)
    cfg = validate(raw)
    summaries = run_pipeline(cfg, tmp / "w", stages=("prepare", "train_teacher", "soft_targets", "train_baseline",
                                                     "distill", "finetune", "evaluate"))
    return cfg, tmp / "w", enc, summaries


def test_losses_are_registered_for_the_embedding_task():
    s, t = torch.randn(8, 6, requires_grad=True), torch.randn(8, 6)
    y = torch.full((8,), -1)
    mse = LOSSES["embedding_mse"]
    terms = mse.fn(s, t, y, 4.0, 0.9, mse.bind({}))
    assert set(terms) == {"mse"} and torch.allclose(terms["mse"], F.mse_loss(s, t))
    cos = LOSSES["embedding_cosine"]
    both = cos.fn(s, t, y, 4.0, 0.9, cos.bind({"mse": 0.5}))
    assert torch.allclose(both["cosine"], (1 - F.cosine_similarity(s, t)).mean())
    assert torch.allclose(both["mse"], 0.5 * F.mse_loss(s, t))
    assert float(cos.fn(t, t, y, 1, 1, cos.bind({}))["cosine"]) == pytest.approx(0, abs=1e-6)
    sum(both.values()).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="valid keys"):
        LOSSES.check("embedding_mse", {"cosin": 1.0})


def test_pooling_and_sentence_transformers_config(tmp_path):
    h = torch.arange(12.0).view(1, 3, 4)
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pool(h, mask, "mean"), h[:, :2].mean(1))
    assert torch.equal(pool(h, mask, "max"), h[:, 1])
    assert torch.equal(pool(h, mask, "cls"), h[:, 0])
    raw, enc = embed_raw(tmp_path)
    assert sentence_config(enc) == {"pooling": "mean", "normalize": True}
    (enc / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_sqrt_len_tokens": True}))
    with pytest.raises(KdflowError, match="not supported"):
        sentence_config(enc)


def test_encoder_teacher_is_mean_pooled_and_normalized(chain):
    cfg, w, enc, _ = chain
    teacher, spec = load_model(w / "models/teacher")
    assert spec["task"] == "embedding" and spec["embedding_dim"] == 32 and spec["name"] == "hf-encoder:"
    assert spec["source"]["uri"] == f"encoder:{enc}" and "modules.json" in spec["source"]["sha256"]
    from transformers import BertModel

    ref = BertModel.from_pretrained(str(enc)).eval()
    ids = torch.tensor([[2, 6, 7, 8, 3], [2, 9, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        h = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        want = F.normalize((h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True), dim=-1)
        assert torch.allclose(teacher(ids), want, atol=1e-5)


def test_store_holds_the_teachers_embeddings(chain):
    cfg, w, _, summaries = chain
    ids, emb, manifest = read_store(w / "soft_targets/teacher")
    assert manifest["target"] == "embedding" and manifest["embedding_dim"] == 32 and emb.shape == (len(ids), 32)
    teacher, spec = load_model(w / "models/teacher")
    info = json.loads((w / "data/prepared/dataset.json").read_text())
    want, _ = embed_split(teacher, w / "data/prepared", info, "train")
    train_ids = np.load(w / "data/prepared/train.npz")["id"]
    row = {int(i): k for k, i in enumerate(ids)}
    got = emb[[row[int(i)] for i in train_ids]]
    assert np.abs(got - want).max() < 2e-3  # float16 storage
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=2e-3)


def test_probe_and_cosines():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = rng.normal(size=(400, 8)) + 4 * y[:, None] * np.eye(8)[0]
    acc, pred = probe(x[:300], y[:300], x[300:], y[300:])
    assert acc > 0.9 and pred.shape == (100,)
    noise_acc, _ = probe(rng.normal(size=(300, 8)), y[:300], rng.normal(size=(100, 8)), y[300:])
    assert noise_acc < 0.75
    a = rng.normal(size=(5, 4))
    assert np.allclose(cosines(a, 2 * a), 1) and np.allclose(cosines(a, -a), -1)


def test_distillation_beats_the_untrained_student(chain):
    cfg, w, _, summaries = chain
    m = json.loads((w / "metrics/metrics.json").read_text())
    assert m["student.cosine_to_teacher"] > m["baseline.cosine_to_teacher"] + 0.2
    assert m["student.cosine_to_teacher"] > 0.8
    assert m["student.probe_accuracy"] >= m["baseline.probe_accuracy"]
    assert m["teacher.probe_accuracy"] > 0.8 and m["compression"] > 1
    assert summaries["train_baseline"]["untrained"] and not summaries["finetune"]["finetuned"]
    student = json.loads((w / "models/student/model.json").read_text())
    assert student["task"] == "embedding" and student["lineage"]["init"]["word_embeddings"] == "teacher_pca"
    assert "Student reaches a mean cosine" in (w / "metrics/report.html").read_text()


def test_pca_word_embeddings_keep_the_top_directions(chain):
    cfg, w, _, _ = chain
    teacher, _ = load_model(w / "models/teacher")
    student = build_model(json.loads((w / "models/baseline/model.json").read_text()))
    out = pca_word_embeddings(student, teacher)
    s = student.net.model.get_input_embeddings().weight
    t = teacher.net.model.get_input_embeddings().weight
    assert s.shape[1] == 16 and 0 < out["explained_variance"] <= 1
    centered = t - t.mean(0)
    # the teacher's centred rows in its top-16 principal basis: orthogonal columns, the explained share of the norm
    gram = s.T @ s
    assert torch.allclose(gram, torch.diag(torch.diagonal(gram)), atol=1e-3 * float(gram.abs().max()))
    assert float(s.norm() ** 2 / centered.norm() ** 2) == pytest.approx(out["explained_variance"], rel=1e-3)


def test_student_width_must_match_the_store(chain, tmp_path):
    cfg, w, _, _ = chain
    raw = cfg.model_dump(mode="json")
    raw["student"]["model"]["kwargs"]["dim"] = 24
    inputs = {"data": w / "data/prepared", "soft_targets": w / "soft_targets/teacher", "teacher": w / "models/teacher"}
    with pytest.raises(KdflowError, match="24-d embeddings but the teacher signal is 32-d"):
        run_stage("distill", validate(raw), inputs, {"model": tmp_path / "s"})


def test_a_classifier_teacher_is_refused_for_the_embedding_task(chain, tmp_path):
    cfg, w, _, _ = chain
    hf = write_bert(tmp_path / "clf", num_labels=2, id2label={0: "neg", 1: "pos"})
    raw = cfg.model_dump(mode="json")
    raw["teacher"]["source"] = {"uri": str(hf)}
    with pytest.raises(KdflowError, match="is a classifier but task is embedding"):
        run_stage("train_teacher", validate(raw), {"data": w / "data/prepared"}, {"model": tmp_path / "t"})


@pytest.mark.parametrize("change, message", [
    ({"distill": {"loss": "kd"}}, "is a classification loss but task is embedding"),
    ({"task": "classification"}, "is an embedding loss: set task: embedding"),
    ({"student": {"model": {"name": "text-cnn"}}}, "is not a sentence encoder"),
    ({"student": {"model": {"name": "text-embed", "kwargs": {"layers": 1}}}}, "student.model.kwargs.dim"),
    ({"finetune": {"train": {"epochs": 1}}}, "finetune.train.epochs: 0"),
    ({"soft_targets": {"topk": 4}}, "soft_targets.topk: null"),
    ({"register": {"gate": {"max_ece": 0.1}}}, "register.gate.max_ece"),
    ({"data": {"text": {"column": "text", "tokenizer": "enc", "student_vocab": 500}}}, "share the teacher's tokenizer"),
])
def test_bad_embedding_configs_fail_clearly(tmp_path, change, message):
    raw, _ = embed_raw(tmp_path, normalize=False)
    for section, value in change.items():
        raw[section] = {**raw[section], **value} if isinstance(value, dict) and section in raw else value
    with pytest.raises(KdflowError, match=message):
        validate(raw)


def test_server_returns_the_students_embeddings(chain):
    """The distilled encoder served over real HTTP on 127.0.0.1: sentences in, vectors out; bad input still 4xx."""
    import httpx

    from kdflow.data.tokenized import load_tokenizer
    from kdflow.serving.app import create_app
    from kdflow.serving.config import ServeConfig
    from tests.support.live import serve

    cfg, w, _, _ = chain
    student, spec = load_model(w / "models/student")
    texts = ["good film", "the plot was dull and bad and sad"]
    with serve(create_app(ServeConfig(model=str(w / "models/student"), max_request_items=4))) as url:
        r = httpx.post(f"{url}/predict", json={"instances": texts})
        assert r.status_code == 200, r.text
        got = torch.tensor(r.json()["embeddings"])
        ids = load_tokenizer(w / "models/student/tokenizer")(texts, padding=True, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            torch.testing.assert_close(got, student(ids), atol=1e-4, rtol=1e-3)
        assert got.shape == (2, spec["embedding_dim"]) and "predictions" not in r.json()
        r = httpx.post(f"{url}/predict", json={"instances": []})
        assert r.status_code == 422 and "non-empty list" in r.json()["error"]


def test_embedding_profile_compiles_to_the_same_kubeflow_pipeline(tmp_path):
    """No pipeline code specific to embeddings: the SST-2 embedding profile compiles with the one pipeline."""
    import yaml

    from kdflow.kfp.entrypoints import compile_pipeline
    from tests.helpers import REPO

    raw = yaml.safe_load((REPO / "benchmarks" / "profiles" / "text-embed-sst2.yaml").read_text())
    text = compile_pipeline(raw, tmp_path / "p.yaml", image="kdflow:test").read_text()
    assert "encoder:models/all-MiniLM-L6-v2" in text and "embedding_cosine" in text
