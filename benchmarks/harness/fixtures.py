"""Data written for benchmarks: images as an `npz:` source, digits at 28×28, the random-pixel speed fixture."""

from __future__ import annotations

from pathlib import Path

from .profiles import load_profile, quiet_training, with_overrides
from .stages import stage


def image_npz(path: Path, x, y) -> str:
    """Write (N, 1, H, W) images + labels as an `npz:` source; returns the source string."""
    import numpy as np

    np.savez(path, x=np.asarray(x, np.float32), y=np.asarray(y, np.int64))
    return f"npz:{path}"


def digits28(path: Path) -> str:
    """scikit-learn's digits resized 8×8 → 28×28 (bilinear), the default data of the Hinton setup."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype("float32") / 16.0)[:, None]
    return image_npz(path, F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).numpy(), d.target)


def speed_fixture(work: Path, samples: int) -> tuple[dict, Path, Path]:
    """The Hinton MLPs on `samples` random 28×28 training images (+ val/test): (params, data dir, teacher dir).

    Content does not change a dense net's speed, so random pixels stand in for MNIST; the teacher is
    saved untrained (its weights do not change its cost either).
    """
    import numpy as np

    from kdflow.config import validate
    from kdflow.data.reader import load_info
    from kdflow.models import build_model, save_model
    from kdflow.stages.common import spec_for

    rng = np.random.default_rng(0)
    held_out = min(2000, samples // 4)  # val and test each
    n = samples + 2 * held_out
    source = image_npz(work / "random28.npz", rng.random((n, 1, 28, 28), np.float32), rng.integers(0, 10, n))
    raw = quiet_training(with_overrides(load_profile("hinton"), {
        "data.source": source, "data.val_size": held_out, "data.test_size": held_out}))
    data = work / "data"
    stage("prepare", raw, {}, {"data": data})
    (work / "random28.npz").unlink()
    cfg = validate(raw)
    spec = spec_for(cfg.teacher.model, load_info(data))
    save_model(build_model(spec), work / "teacher", spec, role="teacher")
    return raw, data, work / "teacher"
