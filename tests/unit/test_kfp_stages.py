"""The two pipeline-only stages: merge_soft_targets (shards of one teacher → one store, identical to a
single generation) and select_best (best validation accuracy among candidates, never test)."""

import json

import numpy as np
import pytest

from kdflow.errors import KdflowError
from kdflow.io import read_json
from kdflow.models import build_model, save_model
from kdflow.soft_target_store import read_store, write_store
from kdflow.stages import merge_soft_targets, select_best, soft_targets
from kdflow.stages.common import spec_for
from tests.helpers import tiny_cfg


def make_teacher(path, data, seed: int):
    import torch

    from kdflow.data.reader import load_info

    torch.manual_seed(seed)
    spec = spec_for(tiny_cfg().teacher.model, load_info(data))
    save_model(build_model(spec), path, spec, role="teacher")
    return path


@pytest.fixture(scope="module")
def teachers(prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return [make_teacher(root / f"t{i}", prepared, seed=i) for i in range(2)]


def shards(cfg, data, teacher, root, n):
    out = {}
    for i in range(n):
        soft_targets.run(cfg, {"data": data, "teacher": teacher}, {"soft_targets": root / f"s{i}"},
                         shard_index=i, num_shards=n)
        out[f"shard_{i}"] = root / f"s{i}"
    return out


@pytest.mark.parametrize("topk", [None, 3])
def test_merged_shards_equal_one_generation(prepared, teachers, tmp_path, topk):
    cfg = tiny_cfg(soft_targets__topk=topk, soft_targets__shard_size=128)
    soft_targets.run(cfg, {"data": prepared, "teacher": teachers[0]}, {"soft_targets": tmp_path / "single"})
    parts = shards(cfg, prepared, teachers[0], tmp_path, 3)
    summary = merge_soft_targets.run(cfg, dict(reversed(parts.items())), {"soft_targets": tmp_path / "merged"})
    ids_1, logits_1, m_1 = read_store(tmp_path / "single")
    ids_m, logits_m, m_m = read_store(tmp_path / "merged")
    assert summary["shards_merged"] == 3 and summary["samples"] == len(ids_1)
    np.testing.assert_array_equal(ids_m, ids_1)
    np.testing.assert_array_equal(logits_m, logits_1)
    assert (m_m["num_shards"], m_m["topk"], m_m["teachers"]) == (1, topk, m_1["teachers"])
    assert len(m_m["merged_from"]) == 3 and m_m["data_hash"] == m_1["data_hash"]


def test_merge_refuses_incomplete_or_mixed_shards(prepared, teachers, tmp_path):
    cfg = tiny_cfg()
    parts = shards(cfg, prepared, teachers[0], tmp_path / "a", 3)
    with pytest.raises(KdflowError, match="do not cover"):
        merge_soft_targets.run(cfg, {k: parts[k] for k in ("shard_0", "shard_2")}, {"soft_targets": tmp_path / "m"})
    with pytest.raises(KdflowError, match="do not cover"):
        merge_soft_targets.run(cfg, {**parts, "again": parts["shard_1"]}, {"soft_targets": tmp_path / "m"})
    other = shards(cfg, prepared, teachers[1], tmp_path / "b", 3)
    with pytest.raises(KdflowError, match="another teacher"):
        merge_soft_targets.run(cfg, {**parts, "shard_1": other["shard_1"]}, {"soft_targets": tmp_path / "m"})
    assert not (tmp_path / "m").exists()  # no half-written store


def test_merge_tolerates_empty_shards(tmp_path):
    cfg = tiny_cfg()
    meta = {"teachers": [{"weights_sha256": "w"}], "data_hash": "h", "splits": ["train"], "num_shards": 3}
    ids, logits = np.arange(2), np.arange(20, dtype=np.float32).reshape(2, 10)
    write_store(tmp_path / "s0", ids[:0], np.zeros((0, 0), np.float32), 64, None, {**meta, "shard_index": 0})
    write_store(tmp_path / "s1", ids[:1], logits[:1], 64, None, {**meta, "shard_index": 1})
    write_store(tmp_path / "s2", ids[1:], logits[1:], 64, None, {**meta, "shard_index": 2})
    merge_soft_targets.run(cfg, {f"s{i}": tmp_path / f"s{i}" for i in range(3)}, {"soft_targets": tmp_path / "m"})
    got_ids, got, _ = read_store(tmp_path / "m")
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got, logits)


def candidate(path, val_acc, test_acc=0.0):
    path.mkdir(parents=True)
    (path / "model.json").write_text(json.dumps({"training": {"best_val_acc": val_acc}, "test_acc": test_acc}))
    (path / "model.pt").write_bytes(path.name.encode())
    return path


def test_select_best_keeps_the_best_validation_accuracy(tmp_path):
    cands = {"a": candidate(tmp_path / "a", 0.80, test_acc=0.99), "b": candidate(tmp_path / "b", 0.91),
             "c": candidate(tmp_path / "c", None), "d": candidate(tmp_path / "d", 0.91)}
    summary = select_best.run(tiny_cfg(), cands, {"model": tmp_path / "best"})
    assert summary["selected"] == "b" and summary["index"] == 1  # ties keep the earlier candidate
    assert (tmp_path / "best" / "model.pt").read_bytes() == b"b"
    selection = read_json(tmp_path / "best" / "selection.json")
    assert selection["metric"] == "training.best_val_acc"
    assert [c["val_acc"] for c in selection["candidates"]] == [0.80, 0.91, None, 0.91]


def test_select_best_needs_a_scored_candidate(tmp_path):
    with pytest.raises(KdflowError, match="at least one"):
        select_best.run(tiny_cfg(), {}, {"model": tmp_path / "best"})
    with pytest.raises(KdflowError, match="best_val_acc"):
        select_best.run(tiny_cfg(), {"a": candidate(tmp_path / "a", None)}, {"model": tmp_path / "best"})
