"""Reliability drills: SIGKILL `kdflow train-teacher` mid-training, rerun, and check that it resumes to
exactly the result of an uninterrupted run, and that a killed stage never leaves an output that a
later stage or DVC would take as complete."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import tiny_dict

pytestmark = pytest.mark.integration

KDFLOW = Path(sys.executable).with_name("kdflow")
# Enough small steps per epoch that a kill lands mid-training; dropout and augmentation make the
# result depend on every RNG a resume has to restore.
DRILL = {"teacher__train__epochs": 12, "teacher__train__batch_size": 8,
         "teacher__model__kwargs__dropout": 0.1,
         "teacher__train__augment": {"enabled": True, "shift": 2, "scale": 0.1, "noise": 0.05}}


def launch(params: Path, data: Path, out: Path, ckpt: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same thread count in every run: same float sums
    cmd = [str(KDFLOW), "train-teacher", "--params", str(params), "--data", str(data), "--out", str(out),
           "--ckpt-dir", str(ckpt), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def kill_after_first_checkpoint(proc: subprocess.Popen, ckpt: Path, sig: int = signal.SIGKILL) -> None:
    """SIGKILL: the process dies at once. SIGTERM (a pod's termination): Lightning stops after the
    current batch, and the stage must exit 143 (not Lightning's bare SystemExit, status 0) within seconds."""
    deadline = time.monotonic() + 120
    while not (ckpt / "last.ckpt").is_file():
        assert proc.poll() is None, f"exited before its first checkpoint: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, "the run finished before the kill: give it more epochs"
    else:
        assert proc.returncode == 128 + sig, f"exit {proc.returncode} after SIGTERM: {err[-2000:]}"
        assert "SIGTERM" in err and "Traceback" not in err


def test_kill_resume_matches_uninterrupted_and_outputs_stay_atomic(tmp_path, prepared):
    from kdflow.config import validate
    from kdflow.data.reader import load_split
    from kdflow.errors import KdflowError
    from kdflow.models import load_model
    from kdflow.stages import soft_targets, train_teacher

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_dict(**DRILL)))
    ref, out, prev = tmp_path / "ref", tmp_path / "run" / "teacher", tmp_path / "prev" / "teacher"
    # 3 runs at once (start-up dominates): the uninterrupted reference, a SIGKILL with no previous output,
    # and a SIGTERM (pod termination) of a run (another seed) whose --out holds a complete 1-epoch model.
    out.parent.mkdir()
    reference = launch(params, prepared, ref, tmp_path / "ref.ckpt")
    killed = launch(params, prepared, out, tmp_path / "run.ckpt")
    train_teacher.run(validate(tiny_dict(**{**DRILL, "teacher__train__epochs": 1})), {"data": prepared},
                      {"model": prev, "checkpoints": tmp_path / "prev0.ckpt"})
    before = {f.name: f.read_bytes() for f in prev.iterdir()}
    other_seed = launch(params, prepared, prev, tmp_path / "prev.ckpt", "-S", "seed=1")

    kill_after_first_checkpoint(killed, tmp_path / "run.ckpt")
    kill_after_first_checkpoint(other_seed, tmp_path / "prev.ckpt", signal.SIGTERM)
    want = finish(reference)

    # atomic outputs: nothing at --out (or only the previous complete one), no complete-looking sibling
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if (p / "model.json").exists()]
    with pytest.raises(KdflowError, match="not found"):
        soft_targets.run(validate(tiny_dict()), {"data": prepared, "teacher": out}, {"soft_targets": tmp_path / "st"})
    assert {f.name: f.read_bytes() for f in prev.iterdir()} == before
    assert [p.name for p in prev.parent.iterdir()] == ["teacher"]

    got = finish(launch(params, prepared, out, tmp_path / "run.ckpt"))
    assert got["resumed"] is True and want["resumed"] is False
    assert got["epochs_run"] == want["epochs_run"]
    assert got["best_val_acc"] == want["best_val_acc"]
    x = torch.from_numpy(load_split(prepared, "test")["x"])
    with torch.inference_mode():
        logits_got, logits_want = (load_model(p)[0](x) for p in (out, ref))
    assert torch.allclose(logits_got, logits_want, rtol=0, atol=1e-6), \
        f"max |Δlogit| = {float((logits_got - logits_want).abs().max()):.3g}"
    assert not list((tmp_path / "run.ckpt").glob("*.ckpt"))  # no checkpoint left to resume a finished run
