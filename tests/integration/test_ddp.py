"""Lightning DDP on 2 CPU processes through the CLI (what a training job's torchrun launches): the
teacher trained with devices=2, strategy=ddp lands in the same accuracy band as 1 process, rank 0
alone writes the model and the MLflow run, and a launcher/params world-size mismatch fails loudly."""

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from kdflow.io import read_json
from kdflow.kfp.jobs import stage_files
from kdflow.kfp.schema import Kubeflow
from kdflow.kfp.training_job import render
from tests.helpers import tiny_dict

pytestmark = pytest.mark.integration
EPOCHS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(tmp_path, data, name: str, *sets: str, env: dict | None = None) -> subprocess.CompletedProcess:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_dict(teacher__train__epochs=EPOCHS)))
    cmd = [sys.executable, "-m", "kdflow.cli", "train-teacher", "--params", str(params), "--data", str(data),
           "--out", str(tmp_path / name), "-S", f"register.experiment=ddp-{name}", *sets]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)


def best_val_acc(model_dir) -> float:
    return json.loads((model_dir / "model.json").read_text())["training"]["best_val_acc"]


def runs(name: str) -> int:
    from mlflow import MlflowClient

    from kdflow import tracking

    exp = MlflowClient(tracking.tracking_uri()).get_experiment_by_name(f"ddp-{name}")
    return len(MlflowClient(tracking.tracking_uri()).search_runs([exp.experiment_id]))


def test_two_process_ddp_matches_one_process(prepared, tmp_path):
    single = train(tmp_path, prepared, "single")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = train(tmp_path, prepared, "ddp", "-S", "teacher.train.devices=2", "-S", "teacher.train.strategy=ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in ddp.stderr  # really distributed: the second rank joined
    acc_1, acc_2 = best_val_acc(tmp_path / "single"), best_val_acc(tmp_path / "ddp")
    print(f"\nbest val acc: 1 process {acc_1:.3f}, DDP 2 processes {acc_2:.3f}")
    assert acc_1 > 0.2 and acc_2 > 0.2  # both learn (chance is 0.1)
    assert abs(acc_1 - acc_2) < 0.15  # each rank sees half the data per epoch: same band, not same number
    assert runs("ddp") == 1  # rank 0 alone tracks ...
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ddp")) == ["ddp"]  # ... and writes


def test_world_size_mismatch_fails_loudly(prepared, tmp_path):
    out = train(tmp_path, prepared, "bad", "-S", "teacher.train.devices=2", "-S", "teacher.train.strategy=ddp",
                env={"WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0"})
    assert out.returncode == 2
    assert "WORLD_SIZE=3 but num_nodes × devices = 1 × 2 = 2" in out.stderr


def test_rendered_job_command_trains_under_torchrun(prepared, tmp_path):
    """The exact command of the rendered TrainJob, run by torchrun with the PET_* rendezvous variables
    that Kubeflow Trainer / Training Operator give each node (here 1 node × 2 CPU processes)."""
    kf = Kubeflow.model_validate({"data_cache": {"pvc": "kdflow-data", "mount_path": str(tmp_path)},
                                  "training_job": {"enabled": True, "num_nodes": 1, "procs_per_node": 2}})
    raw = tiny_dict(teacher__train__epochs=2, register__experiment="ddp-torchrun")
    wd = stage_files(kf, raw, {"seed": 1}, str(prepared), "job")
    command = render(kf, "unused", "job", "ns")["spec"]["trainer"]["command"]
    assert command[0] == "torchrun"
    env = {**os.environ, "PET_NNODES": "1", "PET_NPROC_PER_NODE": "2", "PET_NODE_RANK": "0",
           "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(free_port())}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", *command[1:]], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    model = read_json(wd / "model" / "model.json")
    assert model["training"]["epochs_run"] == 2 and model["lineage"]["params_hash"]
    assert runs("torchrun") == 1
