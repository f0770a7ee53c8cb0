"""`distill.features` on text through the distill stage: an imported HF teacher's hidden states and attention
distributions taught to a narrower text-bert student, on padded token-id batches."""

from tests.support.text_fixtures import write_bert

HIDDEN = "model.bert.encoder.layer.{}"  # module paths inside the Hugging Face model, relative to .net
ATTN = "model.bert.encoder.layer.{}.attention.self"


def test_distill_stage_trains_a_text_student_on_hidden_states_and_attention(tmp_path):
    """`distill.features` on text through the stage: the HF teacher runs on the same padded id batches."""
    from kdflow.config import validate
    from kdflow.io import read_json
    from kdflow.stages import distill, prepare, soft_targets, train_teacher
    from tests.support.text_fixtures import text_params, write_csv

    hf = write_bert(tmp_path / "bert", num_labels=2, hidden=32)
    raw = text_params(tmp_path, write_csv(tmp_path / "d.csv", 100), hf, {"source": {"uri": str(hf)}},
                      {"model": {"name": "text-bert", "kwargs": {"layers": 1, "hidden": 16, "heads": 2}}})
    raw["distill"]["features"] = [
        {"student": HIDDEN.format(0), "teacher": HIDDEN.format(1), "weight": 0.5},
        {"method": "attention_probs", "student": ATTN.format(0), "teacher": ATTN.format(1)}]
    raw["distill"]["train"]["epochs"] = 1
    cfg = validate(raw)
    data, teacher, store = tmp_path / "data", tmp_path / "teacher", tmp_path / "st"
    prepare.run(cfg, {}, {"data": data})
    train_teacher.run(cfg, {"data": data}, {"model": teacher})
    soft_targets.run(cfg, {"data": data, "teacher": teacher}, {"soft_targets": store})
    out = tmp_path / "student"
    distill.run(cfg, {"data": data, "soft_targets": store, "teacher": teacher}, {"model": out})
    doc = read_json(out / "model.json", "model")
    assert [f["method"] for f in doc["lineage"]["features"]] == ["hint", "attention_probs"]
    curves = (out / "curves.csv").read_text()
    assert "train_hint_0" in curves and "train_attention_probs_1" in curves
