"""One way to fit any kdflow LightningModule: best-on-val checkpoint, early stopping, resume.

The checkpoint directory survives a kill (DVC `persist: true`); a rerun resumes from
`last.ckpt` only when the fingerprint (params + data hash) matches, and the directory is
cleared once the stage has written its output.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import sys
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from kdflow.config import Train
from kdflow.errors import KdflowError
from kdflow.lit.progress import progress_callbacks
from kdflow.tracking import tracking_uri


@functools.cache  # once per process: each filterwarnings call would add another filter
def _quiet() -> None:
    """Lightning's start-up chatter (accelerator lines, litlogger/litmodels adverts) and two warnings that do
    not apply here: batches come from in-memory tensors (no loader workers needed) and nothing is logged
    per step (so a short epoch under `log_every_n_steps` loses nothing); the checkpoint directory holds our
    fingerprint by design; a torch-internal deprecation."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def _check_world(t: Train) -> None:
    """Fail loudly when the launcher's world size differs from num_nodes × devices (Lightning #13374)."""
    world = os.environ.get("WORLD_SIZE")
    if world is None or t.devices == "auto" or t.strategy in ("auto", "single_device"):
        return
    expected = t.num_nodes * int(t.devices)
    if int(world) != expected:
        raise KdflowError(f"WORLD_SIZE={world} but num_nodes × devices = {t.num_nodes} × {t.devices} = "
                          f"{expected}: the launcher and params disagree")


class _Checkpoint(ModelCheckpoint):
    """ModelCheckpoint whose `state_key` is computed once: Lightning formats it into a profiler label on every
    hook call (~6 per training step), and the stock property rebuilds a dict repr each time."""

    @functools.cached_property
    def state_key(self) -> str:  # its inputs (monitor, mode, triggers) are fixed at construction
        return ModelCheckpoint.state_key.fget(self)


# The key names the class: keep it the stock callback's, so checkpoints written before (or by plain Lightning)
# resume with their best score.
_Checkpoint.__qualname__ = "ModelCheckpoint"


def fit(module: L.LightningModule, datamodule: L.LightningDataModule, t: Train, ckpt_dir: Path,
        fingerprint: str, run_id: str | None = None) -> dict:
    """Train, then load the best-on-val weights into `module`. Returns a small history summary."""
    _check_world(t)
    _quiet()
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stamp = ckpt_dir / "fingerprint.json"
    last = ckpt_dir / "last.ckpt"
    resume = None
    if last.is_file():
        if stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
            resume = str(last)
        else:
            shutil.rmtree(ckpt_dir)
            ckpt_dir.mkdir(parents=True)
    stamp.write_text(json.dumps({"fingerprint": fingerprint}))
    if resume:
        try:
            torch.load(resume, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise KdflowError(f"corrupt checkpoint {resume}: {str(exc).splitlines()[0][:200]} "
                              f"(delete {ckpt_dir} to start over)") from None

    # Both save at validation end, `best` first, so its score rides along in last.ckpt: left to itself,
    # Lightning >= 2.6 may save `best` at train-epoch end, after `last`, and a resumed run forgets the best
    # epoch before the kill. `save_last=True` on `best` would refresh last.ckpt only in epochs that improve
    # val_acc (Lightning >= 2.5), so a kill would redo every epoch since then.
    best = _Checkpoint(dirpath=ckpt_dir, filename="best", monitor="val_acc", mode="max", save_top_k=1,
                           save_weights_only=True, enable_version_counter=False, save_on_train_epoch_end=False)
    last_cb = _Checkpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False,
                           save_on_train_epoch_end=False)
    # Progress: rich bar on a terminal, plain lines in a pod log or `dvc repro > log` (fingerprints start
    # with the stage name).
    callbacks: list = [best, last_cb, *progress_callbacks(fingerprint.split(":")[0], t.progress_bar)]
    if t.patience:
        callbacks.append(EarlyStopping(monitor="val_acc", mode="max", patience=t.patience))
    loggers: list = [CSVLogger(ckpt_dir, name="curves", version=0)]
    if run_id is not None:
        # Asynchronous: each epoch's log_batch would otherwise wait on the store's commit (~30 ms per call on
        # SQLite, two calls an epoch) on the training thread. Lightning's finalize ends the run with
        # set_terminated, which flushes the queue, also when the fit fails.
        loggers.append(MLFlowLogger(tracking_uri=tracking_uri(), run_id=run_id, synchronous=False))
    trainer = L.Trainer(
        max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=t.strategy, precision=t.precision, callbacks=callbacks, logger=loggers,
        enable_progress_bar=t.progress_bar, enable_model_summary=False, use_distributed_sampler=False,
        deterministic=False, num_sanity_val_steps=0, log_every_n_steps=50, default_root_dir=ckpt_dir,
    )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SIGTERMException:
        # Lightning stops after the current batch with a bare SystemExit, i.e. exit status 0: a pod or a
        # `dvc repro` would count the interrupted stage as a success. Exit 143 (128 + SIGTERM) instead.
        print(f"kdflow: SIGTERM: stopped after the current batch; a rerun resumes from {last} "
              "(the end of the last finished epoch)", file=sys.stderr, flush=True)
        raise SystemExit(128 + signal.SIGTERM) from None
    if best.best_model_path and Path(best.best_model_path).is_file():
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state, strict=False)
    curves = ckpt_dir / "curves" / "version_0" / "metrics.csv"
    return {
        "epochs_run": trainer.current_epoch,
        "best_val_acc": float(best.best_model_score) if best.best_model_score is not None else None,
        "resumed": resume is not None,
        "curves_csv": curves.read_text() if curves.is_file() else "",
        "is_global_zero": trainer.is_global_zero,
    }
