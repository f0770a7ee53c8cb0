"""A student with its own vocabulary: prepare trains a smaller tokenizer on the train texts, the teacher labels the
samples in its ids, the student distills from those soft targets (joined by sample id) in its own ids, evaluate
reads each model's own tokenization, and the server tokenizes with the student's tokenizer."""

import httpx
import pytest
import torch

from kdflow.config import validate
from kdflow.errors import KdflowError
from kdflow.io import read_json
from kdflow.models import load_model
from kdflow.stages import distill, evaluate, finetune, prepare, soft_targets, train_baseline, train_teacher
from tests.support.text_fixtures import text_params, write_bert, write_csv


def test_student_with_its_own_vocabulary_distills_evaluates_and_serves(tmp_path):
    from transformers import AutoTokenizer

    from kdflow.serving.app import create_app
    from kdflow.serving.config import ServeConfig
    from tests.support.live import serve

    enc = write_bert(tmp_path / "bert", num_labels=None, hidden=32)  # fine-tuned by train_teacher
    raw = text_params(tmp_path, write_csv(tmp_path / "d.csv", 240), enc,
                      {"source": None, "init_from": {"uri": str(enc)},
                       "train": {"epochs": 4, "batch_size": 16, "lr": 0.003, "progress_bar": False}},
                      {"model": {"name": "text-cnn", "kwargs": {"embed": 16, "channels": 16}}})
    raw["data"]["text"]["student_vocab"] = 150
    raw["distill"].update(alpha=0.9, train={**raw["distill"]["train"], "epochs": 4})
    cfg = validate(raw)
    p = {k: tmp_path / k for k in ("data", "teacher", "st", "baseline", "student", "final", "metrics")}
    prepare.run(cfg, {}, {"data": p["data"]})
    train_teacher.run(cfg, {"data": p["data"]}, {"model": p["teacher"]})
    soft_targets.run(cfg, {"data": p["data"], "teacher": p["teacher"]}, {"soft_targets": p["st"]})
    train_baseline.run(cfg, {"data": p["data"]}, {"model": p["baseline"]})
    distill.run(cfg, {"data": p["data"], "soft_targets": p["st"]}, {"model": p["student"]})
    finetune.run(cfg, {"data": p["data"], "student": p["student"]}, {"model": p["final"]})
    evaluate.run(cfg, {"data": p["data"], "teacher": p["teacher"], "baseline": p["baseline"],
                       "student": p["final"]}, {"metrics": p["metrics"]})

    t_vocab = read_json(p["data"] / "dataset.json", "d")["tokenizer"]["vocab_size"]
    _, spec = load_model(p["final"])
    s_vocab = spec["text"]["vocab_size"]
    assert s_vocab == read_json(p["data"] / "student" / "dataset.json", "d")["tokenizer"]["vocab_size"] != t_vocab
    stok = AutoTokenizer.from_pretrained(str(p["final"] / "tokenizer"))
    assert len(stok) == s_vocab  # the student carries its own tokenizer, not the teacher's
    metrics = read_json(p["metrics"] / "metrics.json", "m")
    assert metrics["teacher.accuracy"] > 0.7 and metrics["teacher_agreement"] > 0.7  # learned from the teacher

    model, _ = load_model(p["final"])
    sentences = ["good film and very fun", "the plot was dull and sad"]
    with serve(create_app(ServeConfig(model=str(p["final"])))) as url:
        r = httpx.post(f"{url}/predict", json={"instances": sentences})
        assert r.status_code == 200, r.text
    want = torch.softmax(model.eval()(stok(sentences, padding=True, return_tensors="pt")["input_ids"]), 1)
    got = torch.tensor([q["probabilities"] for q in r.json()["predictions"]])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)

    # online teachers and feature terms would feed the teacher the student's ids: refused, clearly
    raw["soft_targets"]["mode"] = "online"
    with pytest.raises(KdflowError, match="its own vocabulary"):
        distill.run(validate(raw), {"data": p["data"], "teacher": p["teacher"]}, {"model": tmp_path / "x"})
