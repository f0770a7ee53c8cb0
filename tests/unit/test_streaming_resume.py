"""A streaming run stopped mid-epoch (SIGTERM, as a pod sees it) resumes to exactly the uninterrupted result:
random crops are seeded by (seed, epoch, sample id), not by which loader worker decodes a sample."""

import os
import signal
import threading
import time

import pytest
import torch

from kdflow.stages import prepare, train_teacher
from tests.helpers import tiny_cfg
from tests.unit.test_streaming import SPLITS, images  # noqa: F401  (the module-scoped image fixture)


def _sigterm_after(path, deadline=120.0):
    def wait():
        t0 = time.monotonic()
        while not path.is_file() and time.monotonic() - t0 < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)
    th = threading.Thread(target=wait, daemon=True)
    th.start()
    return th


def test_streaming_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, images, capfd):  # noqa: F811
    root, _ = images
    kw = dict(**SPLITS, data__source=f"imagefolder:{root}", data__format="streaming", data__image_size=[12, 12],
              teacher__model={"name": "cnn2d", "kwargs": {"channels": [4], "dropout": 0.1}},
              teacher__train={"epochs": 4, "batch_size": 4, "lr": 0.01, "progress_bar": False, "num_workers": 2})
    data = tmp_path / "data"
    prepare.run(tiny_cfg(**kw), {}, {"data": data})
    cfg = tiny_cfg(**kw)
    ref = train_teacher.run(cfg, {"data": data}, {"model": tmp_path / "ref", "checkpoints": tmp_path / "ck-ref"})

    ck = tmp_path / "ck"
    _sigterm_after(ck / "last.ckpt")
    with pytest.raises(SystemExit) as stop:
        train_teacher.run(cfg, {"data": data}, {"model": tmp_path / "run", "checkpoints": ck})
    assert stop.value.code == 128 + signal.SIGTERM and not (tmp_path / "run").exists()
    assert f"a rerun resumes from {ck / 'last.ckpt'}" in capfd.readouterr().err
    got = train_teacher.run(cfg, {"data": data}, {"model": tmp_path / "run", "checkpoints": ck})
    assert got["resumed"] and not ref["resumed"] and got["best_val_acc"] == ref["best_val_acc"]
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("ref", "run"))
    assert all(torch.equal(a[k], b[k]) for k in a)
