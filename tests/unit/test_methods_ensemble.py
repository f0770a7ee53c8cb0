"""Multi-teacher stores: combination by sample id, manifest lineage, weights, refusal of mismatches."""

from pathlib import Path

import numpy as np
import pytest
import torch

from kdflow.errors import KdflowError
from kdflow.lit.distill import DistillModule
from kdflow.models import build_model
from kdflow.soft_target_store import lookup_table, read_store, write_store
from kdflow.stages import combine_teachers
from tests.helpers import tiny_cfg


def store(path, ids, logits, name, data_hash="h"):
    write_store(path, np.asarray(ids), np.asarray(logits, np.float32), 10, None,
                {"teachers": [{"name": name, "weights_sha256": name * 4}], "data_hash": data_hash, "splits": []})
    return path


def test_combine_aligns_by_id_and_records_teachers(tmp_path):
    a = store(tmp_path / "a", [5, 1, 3], [[1, 0], [2, 0], [3, 0]], "resnet")
    b = store(tmp_path / "b", [3, 5, 1], [[0, 30], [0, 10], [0, 20]], "cnn1d")  # another order
    out = combine_teachers.run(tiny_cfg(), {"main": a, "seed1": b}, {"soft_targets": tmp_path / "ens"})
    assert out["teachers"] == ["main", "seed1"] and out["num_teachers"] == 2
    ids, logits, m = read_store(tmp_path / "ens")
    assert ids.tolist() == [1, 3, 5] and logits.shape == (3, 2, 2) and m["num_teachers"] == 2
    assert logits[:, 0, 0].tolist() == [2, 3, 1] and logits[:, 1, 1].tolist() == [20, 30, 10]
    assert [t["name"] for t in m["teachers"]] == ["resnet", "cnn1d"]
    assert [t["member"] for t in m["teachers"]] == ["main", "seed1"]
    assert all(t["store_checksum"] for t in m["teachers"]) and m["num_classes"] == 2
    table = lookup_table(tmp_path / "ens")
    assert table.shape == (6, 2, 2) and torch.isnan(table[0]).all()
    # a combined store combines again (K adds up)
    c = store(tmp_path / "c", [1, 3, 5], [[0, 0]] * 3, "mlp")
    combine_teachers.run(tiny_cfg(), {"ens": tmp_path / "ens", "c": c}, {"soft_targets": tmp_path / "ens3"})
    assert read_store(tmp_path / "ens3")[1].shape == (3, 3, 2)


def test_combine_refuses_mismatches(tmp_path):
    a = store(tmp_path / "a", [0, 1], [[1, 0], [2, 0]], "t")
    cfg = tiny_cfg()
    with pytest.raises(KdflowError, match="at least two"):
        combine_teachers.run(cfg, {"main": a}, {"soft_targets": tmp_path / "x"})
    b = store(tmp_path / "b", [0, 2], [[1, 0], [2, 0]], "t")
    with pytest.raises(KdflowError, match="covers 2 samples.*differ"):
        combine_teachers.run(cfg, {"main": a, "b": b}, {"soft_targets": tmp_path / "x"})
    c = store(tmp_path / "c", [0, 1], [[1, 0, 0], [2, 0, 0]], "t")
    with pytest.raises(KdflowError, match="3 classes"):
        combine_teachers.run(cfg, {"main": a, "c": c}, {"soft_targets": tmp_path / "x"})
    d = store(tmp_path / "d", [0, 1], [[1, 0], [2, 0]], "t", data_hash="other")
    with pytest.raises(KdflowError, match="another dataset"):
        combine_teachers.run(cfg, {"main": a, "d": d}, {"soft_targets": tmp_path / "x"})
    assert not (tmp_path / "x").exists()


def test_topk_is_refused_for_multi_teacher_stores(tmp_path):
    with pytest.raises(KdflowError, match="top-k"):
        write_store(tmp_path / "s", np.arange(2), np.zeros((2, 2, 3), np.float32), 10, 2, {})


def test_distill_module_averages_teacher_probabilities_with_weights():
    ln3 = float(np.log(3))
    table = torch.tensor([[[ln3, 0.0], [0.0, 0.0]]])  # one sample, teachers [3/4, 1/4] and [1/2, 1/2]
    spec = {"input_shape": [1, 4], "num_classes": 2, "mean": [0.0], "std": [1.0], "name": "mlp",
            "kwargs": {"hidden": [4]}}
    cfg = tiny_cfg(distill__temperature=1.0).distill
    m = DistillModule(build_model(spec), cfg, table=table, teacher_weights=[3.0, 1.0])
    p = m.teacher_logits(torch.zeros(1, 1, 4), torch.tensor([0])).softmax(1)
    assert p[0].tolist() == pytest.approx([11 / 16, 5 / 16], abs=1e-6)
    with pytest.raises(KdflowError, match="ensemble.weights has 3 entries but the soft targets hold 2"):
        DistillModule(build_model(spec), cfg, table=table, teacher_weights=[1.0, 1.0, 1.0])


def test_member_params_and_reserved_names():
    cfg = tiny_cfg(ensemble__teachers={"wide": {"seed": 7, "model": {"name": "mlp", "kwargs": {"hidden": [16]}}},
                                       "s1": {"seed": 1}})
    wide = combine_teachers.member_params(cfg, "wide")
    assert wide.seed == 7 and wide.teacher.model.name == "mlp" and wide.teacher.train == cfg.teacher.train
    assert combine_teachers.member_params(cfg, "s1").teacher.model == cfg.teacher.model
    with pytest.raises(KdflowError, match="no member 'nope'; members: wide, s1"):
        combine_teachers.member_params(cfg, "nope")
    with pytest.raises(KdflowError, match="reserved"):
        tiny_cfg(ensemble__teachers={"main": {"seed": 1}})
    with pytest.raises(KdflowError, match="ensemble.weights"):
        tiny_cfg(ensemble__weights=[-1, 2])
    stores = combine_teachers.stores_from_params(cfg, Path("st/main"), Path("pool"))
    assert stores == {"main": Path("st/main"), "wide": Path("pool/wide"), "s1": Path("pool/s1")}
    with pytest.raises(KdflowError, match="--main"):
        combine_teachers.stores_from_params(cfg, None, Path("pool"))
