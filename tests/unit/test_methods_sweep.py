"""`kdflow sweep` search spaces, value application and the best.yaml hand-off to the distill stage."""

import pytest

from kdflow.errors import KdflowError
from kdflow.stages.sweep import apply_best, points, set_path, with_values
from tests.helpers import tiny_cfg


def test_grid_is_the_full_product_in_order():
    cfg = tiny_cfg(sweep__space={"temperature": [2, 4], "alpha": [0.5, 0.7, 0.9]})
    grid = points(cfg.sweep)
    assert len(grid) == 6 and grid[0] == {"temperature": 2, "alpha": 0.5} and grid[-1] == {"temperature": 4,
                                                                                          "alpha": 0.9}
    assert points(tiny_cfg(sweep__space={}).sweep) == [{}]  # no space: one trial at the current values


def test_grid_refuses_ranges_and_oversize():
    with pytest.raises(KdflowError, match="ranges; a grid needs lists"):
        points(tiny_cfg(sweep__space={"temperature": {"low": 1, "high": 8}}).sweep)
    with pytest.raises(KdflowError, match="6 points, more than sweep.trials=5"):
        points(tiny_cfg(sweep__space={"temperature": [1, 2], "alpha": [0.1, 0.2, 0.3]}, sweep__trials=5).sweep)


def test_random_draws_within_ranges_reproducibly():
    cfg = tiny_cfg(sweep__strategy="random", sweep__trials=50, sweep__seed=3,
                   sweep__space={"temperature": {"low": 1, "high": 16, "log": True}, "alpha": [0.5, 0.9]})
    draws = points(cfg.sweep)
    assert len(draws) == 50 and draws == points(cfg.sweep)
    assert all(1 <= d["temperature"] <= 16 and d["alpha"] in (0.5, 0.9) for d in draws)
    assert sum(d["temperature"] < 4 for d in draws) > 15  # log-uniform: half the mass below √16 = 4
    with pytest.raises(KdflowError, match="low < high"):
        tiny_cfg(sweep__space={"temperature": {"low": 4, "high": 2}})


def test_values_apply_under_distill_with_list_indices_and_fail_by_name():
    cfg = tiny_cfg(distill__loss="dkd", distill__features=[{"student": "features.2", "teacher": "features.4"}])
    got = with_values(cfg, {"temperature": 2.0, "loss_params.nckd": 4.0, "features.0.weight": 0.5}, epochs=3)
    assert (got.distill.temperature, got.distill.loss_params["nckd"], got.distill.features[0].weight) == \
        (2.0, 4.0, 0.5)
    assert got.distill.train.epochs == 3 and cfg.distill.temperature == 4.0  # the input is not modified
    with pytest.raises(KdflowError, match="unknown key 'distill.temprature'"):
        with_values(cfg, {"temprature": 2.0})
    with pytest.raises(KdflowError, match="'distill.features.3': no such list entry"):
        with_values(cfg, {"features.3.weight": 1.0})
    with pytest.raises(KdflowError, match="bad value for 'distill.alpha'"):
        with_values(cfg, {"alpha": 1.5})
    node = {"a": [{"b": 1}]}
    set_path(node, "a.0.b", 2)
    assert node == {"a": [{"b": 2}]}


def test_best_yaml_feeds_distill(tmp_path):
    (tmp_path / "best.yaml").write_text("val_acc: 0.9\noverrides: {temperature: 2.0, alpha: 0.5}\n")
    cfg = apply_best(tiny_cfg(distill__from_sweep=str(tmp_path)), tmp_path)  # a directory works too
    assert (cfg.distill.temperature, cfg.distill.alpha, cfg.distill.from_sweep) == (2.0, 0.5, None)
    with pytest.raises(KdflowError, match="not found"):
        apply_best(tiny_cfg(), tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("temperature: 2\n")
    with pytest.raises(KdflowError, match="no 'overrides'"):
        apply_best(tiny_cfg(), tmp_path / "bad.yaml")
