"""Real `dvc repro` of the repo's dvc.yaml for `task: embedding`: a tiny csv, a tiny random BERT encoder imported
as the sentence encoder, a `text-embed` student, every stage to the registry. Only params.yaml differs."""

import json

import pytest
import yaml

from kdflow.stages.registry import PIPELINE
from tests.helpers import repo_copy
from tests.integration.test_dvc_repro import ran, sh
from tests.support.text_fixtures import text_params, write_bert, write_csv

pytestmark = pytest.mark.integration


def test_embedding_dvc_repro(tmp_path):
    work, env = repo_copy(tmp_path, ("dvc.yaml", ".dvc", ".dvcignore", "src", ".gitignore"))
    (work / "data").mkdir()
    csv = write_csv(work / "data" / "text.csv", 200)
    write_bert(work / "encoder", num_labels=None, layers=1, hidden=32)
    params = text_params(work, csv, work / "encoder", {"source": {"uri": "encoder:encoder"}},
                         {"model": {"name": "text-embed", "kwargs": {"layers": 1, "hidden": 16, "heads": 2,
                                                                     "dim": 32}}})
    params["task"] = "embedding"
    params["data"]["source"], params["data"]["text"]["tokenizer"] = "csv:data/text.csv", "encoder"
    params["distill"] = {"loss": "embedding_cosine", "word_embeddings": "teacher_pca",
                         "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "progress_bar": False}}
    (work / "params.yaml").write_text(yaml.safe_dump(params))

    out = sh("dvc", "repro", cwd=work, env=env)
    assert ran(out) == list(PIPELINE)
    m = json.loads((work / "metrics" / "metrics.json").read_text())
    assert m["student.cosine_to_teacher"] > m["baseline.cosine_to_teacher"]
    for role in ("teacher", "baseline", "student"):
        assert 0 <= m[f"{role}.probe_accuracy"] <= 1 and m[f"{role}.throughput_per_s"] > 0
    reg = json.loads((work / "registration" / "registration.json").read_text())
    assert reg["version"] == "1"
