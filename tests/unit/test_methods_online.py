"""Online teacher: it runs on exactly the (augmented) batch the student trains on; bf16-mixed passes through."""

import lightning as L
import pytest
import torch

from kdflow.data.module import KDDataModule
from kdflow.errors import KdflowError
from kdflow.lit.distill import DistillModule
from kdflow.models import build_model
from tests.helpers import tiny_cfg

AUG = {"enabled": True, "shift": 3, "scale": 0.1, "noise": 0.1}


def spec(channels):
    return {"input_shape": [1, 40], "num_classes": 10, "mean": [0.0], "std": [1.0], "name": "cnn1d",
            "kwargs": {"channels": channels}}


def trainer(**kw):
    return L.Trainer(max_steps=3, limit_val_batches=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     accelerator="cpu", **kw)


def test_teacher_sees_the_augmented_student_batch(prepared):
    cfg = tiny_cfg(soft_targets__mode="online", distill__train__augment=AUG)
    student, teacher = build_model(spec([8, 8, 8])), build_model(spec([16, 16, 16]))
    seen_s, seen_t = [], []
    student.register_forward_pre_hook(lambda m, a: seen_s.append(a[0].clone()) if m.training else None)
    teacher.register_forward_pre_hook(lambda m, a: seen_t.append(a[0].clone()))
    module = DistillModule(student, cfg.distill, teacher=teacher)
    dm = KDDataModule(prepared, 32, with_transfer=True)
    trainer().fit(module, datamodule=dm)
    assert len(seen_s) == len(seen_t) == 3
    raw = next(iter(dm.train_dataloader()))[0]
    assert not torch.equal(seen_s[0], raw)  # augmentation did change the batch ...
    for s, t in zip(seen_s, seen_t):
        assert torch.equal(s, t)  # ... and the teacher got the very same augmented inputs
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())


def test_augmentation_needs_online_mode():
    with pytest.raises(KdflowError, match="needs soft_targets.mode: online"):
        tiny_cfg(distill__train__augment=AUG)


@pytest.mark.parametrize("features", [[], [{"student": "features.2", "teacher": "features.4"}]])
def test_bf16_mixed_precision_trains(prepared, features):
    cfg = tiny_cfg(soft_targets__mode="online", distill__train__precision="bf16-mixed", distill__features=features)
    student = build_model(spec([8, 8, 8]))
    before = [p.detach().clone() for p in student.parameters()]
    module = DistillModule(student, cfg.distill, teacher=build_model(spec([16, 16, 16])), input_shape=[1, 40])
    trainer(precision="bf16-mixed").fit(module, datamodule=KDDataModule(prepared, 32, with_transfer=True))
    assert all(p.dtype == torch.float32 for p in student.parameters())  # weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    assert all(torch.isfinite(p).all() for p in student.parameters())


def test_features_need_the_teacher():
    cfg = tiny_cfg(distill__features=[{"student": "features.2", "teacher": "features.4"}])
    with pytest.raises(KdflowError, match="need the teacher model"):
        DistillModule(build_model(spec([8, 8, 8])), cfg.distill, table=torch.zeros(5, 10))
