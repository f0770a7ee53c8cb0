"""Real `dvc repro` of the repo's dvc.yaml on text: a tiny csv, a tiny random BERT fine-tuned by train_teacher
from its encoder dir (fresh head), a DistilBERT-style student cut from the teacher's layers, through every
stage to the registry. No text-specific pipeline code: only params.yaml differs."""

import json

import pytest
import torch
import yaml

from kdflow.models import load_model
from kdflow.stages.registry import PIPELINE
from tests.helpers import repo_copy
from tests.integration.test_dvc_repro import ran, sh
from tests.support.text_fixtures import text_params, write_bert, write_csv

pytestmark = pytest.mark.integration


def test_text_dvc_repro_from_csv_and_a_bert_encoder(tmp_path):
    work, env = repo_copy(tmp_path, ("dvc.yaml", ".dvc", ".dvcignore", "src", ".gitignore"))
    (work / "data").mkdir()
    csv = write_csv(work / "data" / "text.csv", 240)
    enc = write_bert(work / "encoder", num_labels=None, layers=2, hidden=32)
    params = text_params(work, csv, enc, {"source": None, "init_from": {"uri": "encoder"},
                                          "train": {"epochs": 4, "batch_size": 16, "lr": 0.003,
                                                    "progress_bar": False}},
                         {"model": None, "init_from": {"uri": "layers:encoder", "kwargs": {"layers": [1]}}})
    params["data"]["source"], params["data"]["text"]["tokenizer"] = "csv:data/text.csv", "encoder"
    (work / "params.yaml").write_text(yaml.safe_dump(params))

    out = sh("dvc", "repro", cwd=work, env=env)
    assert ran(out) == list(PIPELINE)
    metrics = json.loads((work / "metrics" / "metrics.json").read_text())
    for role in ("teacher", "baseline", "student"):
        for key in ("accuracy", "macro_f1", "ece", "latency_p50_ms", "throughput_per_s", "tokenize_per_s",
                    "model_throughput_per_s"):
            assert metrics[f"{role}.{key}"] >= 0, key
    assert metrics["teacher.accuracy"] > 0.7  # the fine-tuned teacher learned the word lists
    assert 0 <= metrics["teacher_agreement"] <= 1
    info = json.loads((work / "data" / "prepared" / "dataset.json").read_text())
    assert info["modality"] == "text" and info["tokenizer"]["path"] == "encoder"
    student, spec = load_model(work / "models" / "final")
    assert spec["modality"] == "text" and spec["kwargs"]["config"]["num_hidden_layers"] == 1
    assert (work / "models" / "final" / "tokenizer" / "tokenizer.json").is_file()
    assert student(torch.tensor([[2, 6, 7, 3]])).shape == (1, 2)
    reg = json.loads((work / "registration" / "registration.json").read_text())
    assert reg["version"] == "1"
