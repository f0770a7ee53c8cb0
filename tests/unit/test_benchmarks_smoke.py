"""Smoke test of the benchmark harness: profiles validate, tables and target maths are right, and the
quality and training-cost benchmarks run end to end at `--dry` sizes (real stages, tiny data)."""

import json
import os
import sys

import pytest
import torch

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import common as C  # noqa: E402
import hinton_mnist  # noqa: E402
import quality  # noqa: E402
import run_all  # noqa: E402
import training_speed  # noqa: E402

import methods  # noqa: E402


@pytest.fixture
def isolated(monkeypatch):
    """`common.setup` points MLflow at its own store and sets torch threads: undo both afterwards."""
    for key in ("MLFLOW_TRACKING_URI", *C.TELEMETRY_OFF):
        monkeypatch.setenv(key, os.environ.get(key, ""))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["default", *sorted(p.stem for p in C.PROFILES.glob("*.yaml"))])
def test_every_profile_validates_at_every_size(name):
    from kdflow.config import validate

    for size in quality.SIZES:
        validate(quality.sized(C.load_profile(name), size, None), name)


def test_tables_and_targets():
    assert C.pm([0.98, 0.99, 1.0], 100) == "99.00 ± 1.00" and C.pm([0.5], 100) == "50.00"
    assert C.table(["a", "b"], [(1, 2)]).splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]
    run = {"teacher.accuracy": 0.99, "baseline.accuracy": 0.97, "student.accuracy": 0.988, "teacher.params": 1000,
           "student.params": 40, "retention": 0.998, "kd_gain": 0.018, "compression": 25.0, "speedup": 6.0,
           "throughput_ratio": 6.0, "test_samples": 1000}
    md, closed = quality.hinton_table({"runs": [run, run], "seconds": 60})
    assert closed == pytest.approx(0.9) and "| teacher |" in md and "30.0 ± 0.0" in md
    checks = quality.targets({"digits": {"runs": [run]}, "mnist1d": {"runs": [{**run, "student.params": 6000}]}},
                             {"digits": "image", "mnist1d": "signal"})
    assert [c[2].endswith("met") for c in checks] == [True, False]  # mnist1d: 6,000 params > 5,210


def test_hinton_mnist_table_gap_and_cpu_critical_path():
    def run(seed, base, student):
        return {"seed": seed, "teacher.errors": 70, "baseline.errors": base, "student.errors": student,
                "teacher.params": 2_395_210, "student.params": 1_276_810, "load_avg_1m": 1.0,
                "cpu_seconds": {"train_baseline": 100.0, "distill": 200.0 + seed, "evaluate": 10.0},
                "val_acc_curve": {"baseline": [0.98, 0.99], "student": [0.985]}}
    res = {"runs": [run(0, 140, 80), run(1, 150, 76), run(2, 146, 75)], "test_samples": 10_000, "jobs": 2,
           "threads_per_job": 1, "seconds": 1500, "counts": {"train": 55_000, "val": 5_000},
           "teacher_cpu_seconds": {"train_teacher": 900.0, "soft_targets": 5.0}, "teacher_val_acc_curve": [0.97, 0.99]}
    raw = C.load_profile("hinton-mnist")
    md, closed = hinton_mnist.report(res, raw)
    assert closed == pytest.approx((145.33 - 77) / (145.33 - 70), abs=1e-3) and "target ≥ 80 %: met" in md
    assert "| student alone | 784-800-800-10, no regularization | 1,276,810 | 30 | 145.3 ± 5.0 |" in md
    # critical path: teacher 905 s + the longest distill+evaluate of each round of 2 (212, then 210) = 1327 s
    assert "critical path 22.1 CPU-min" in md and "| 2 | 50 | 50 | — |" in md


def test_run_all_collects_tables_from_json_or_stdout(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"markdown": "### X\n\n| a |"}))
    assert run_all.markdown_of("x", tmp_path, "ignored") == "### X\n\n| a |"
    assert run_all.markdown_of("y", tmp_path, "noise\n### Y\n| b |\nmore noise") == "### Y\n| b |"


def test_quality_and_training_speed_dry(tmp_path, isolated):
    assert quality.main(["--dry", "--sets", "digits", "--results", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "quality.json").read_text())
    run = doc["sets"]["digits"]["runs"][0]
    assert doc["machine"]["cores"] and 0 <= run["student.accuracy"] <= 1 and run["compression"] > 20
    assert "| digits |" in doc["markdown"]

    training_speed.run("dry", tmp_path)
    doc = json.loads((tmp_path / "training_speed.json").read_text())
    assert set(doc["best_epoch_seconds"]) == {"a", "b", "c", "plain"} and doc["judged_on"] in ("wall", "cpu")
    assert all(v["cpu"] > 0 for v in doc["best_epoch_seconds"].values()) and "Lightning / plain" in doc["markdown"]


def test_methods_dry(tmp_path, isolated):
    """Every method row exists per seed; the ensemble uses 3 teachers' store; born-again reports 2 generations."""
    assert methods.main(["--dry", "--sets", "mnist1d", "--methods", "kd,ensemble,born", "--results",
                         str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "methods.json").read_text())
    rows = doc["sets"]["mnist1d"]["per_seed"][0]
    assert set(rows) == {"no-KD baseline (augmentation)", "kd", "ensemble of 3 teachers",
                         "born-again gen 1 (from gen 0)", "born-again gen 2 (from gen 1)"}
    assert all(0 <= r["accuracy"] <= 1 and r["kd_gain"] == pytest.approx(r["accuracy"] - rows[
        "no-KD baseline (augmentation)"]["accuracy"]) for r in rows.values())
    assert "| kd |" in doc["markdown"]


def test_run_all_collect_stamps_each_section(tmp_path):
    """--collect: TABLES.md from separate runs, each with its own date/machine/load; no README write."""
    machine = {"cpu": "cpu-x", "cores": 2, "torch": "2.13", "load_avg_1m": 1.5}
    (tmp_path / "a.json").write_text(json.dumps({"markdown": "### A\n\n| a |", "date": "d1", "machine": machine}))
    (tmp_path / "b.json").write_text(json.dumps({"date": "d2", "machine": machine}))
    readme = (REPO / "README.md").read_text()
    assert run_all.main(["--collect", "a", "b", "--results", str(tmp_path)]) == 0
    text = (tmp_path / "TABLES.md").read_text()
    assert "### A\n\n| a |\n\n_a.json: d1 · cpu-x · 2 cores · torch 2.13 · load average at the end 1.5_" in text
    assert "### b: no tables stored" in text and (REPO / "README.md").read_text() == readme
