"""Trainer set-up shared by both stages: the Lightning Trainer, atomic checkpoint IO, run-folder
checks and the best-validation weights."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from structvpr.config import Config
from structvpr.io_utils import atomic_torch_save, unpickling_refusal_reason

MONITOR = "val/R@1"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written through a temporary file + rename, and read with weights_only=True."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: checkpoint file does not exist")
        # Never unpickle code from a checkpoint: configs are stored as plain dicts.
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"{path}: refused to load: not a checkpoint of weights and plain data "
                f"({unpickling_refusal_reason(error)})"
            ) from None
        except (RuntimeError, EOFError, OSError) as error:
            raise ValueError(
                f"{path}: not a readable checkpoint ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200] if str(error) else ''})"
            ) from None


def check_run_dir(config: Config, last_checkpoint: Path) -> None:
    """Refuse to resume without a checkpoint, and to silently start over an existing run."""
    if config.train.resume:
        if not last_checkpoint.is_file():
            raise FileNotFoundError(
                f"{last_checkpoint}: no checkpoint to resume from (drop --resume to start a new run)"
            )
    elif last_checkpoint.exists() and not config.train.overwrite:
        raise ValueError(
            f"{last_checkpoint.parent.parent}: this run folder already has checkpoints; pass "
            "--resume to continue it, --set train.overwrite=true to start over, or choose "
            "another train.output_dir"
        )


def build_trainer(config: Config, run_dir: Path, *, run_sanity_validation: bool) -> L.Trainer:
    """A Lightning Trainer with the config's accelerator/devices/strategy/num_nodes/precision.

    `use_distributed_sampler=False`: the datamodule shards the P x K batches and the validation set
    itself (Lightning cannot re-instantiate a custom batch sampler for DDP).
    """
    train = config.train
    checkpoint_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename="best",
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    # A second callback, not save_last=True: Lightning 2.6 writes "last" only when a top-k file is
    # written, so an epoch that does not improve R@1 would leave a stale last.ckpt behind.
    latest = ModelCheckpoint(
        dirpath=checkpoint_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    return L.Trainer(
        max_epochs=train.epochs,
        accelerator=train.accelerator,
        devices=train.devices,
        strategy=train.strategy,
        num_nodes=train.num_nodes,
        precision=train.precision,
        deterministic=train.deterministic,
        callbacks=[best, latest],
        default_root_dir=run_dir,
        logger=CSVLogger(save_dir=run_dir, name="", version="logs"),
        num_sanity_val_steps=-1 if run_sanity_validation else 0,
        use_distributed_sampler=False,
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=train.log_every_n_steps,
        enable_model_summary=False,
        enable_progress_bar=False,
    )


def best_weights(trainer: L.Trainer, module: L.LightningModule) -> tuple[dict, str]:
    """State dict of the network at the best validation R@1 (or the final one when none was saved)."""
    callback = trainer.checkpoint_callback
    best_path = getattr(callback, "best_model_path", "") if callback is not None else ""
    if best_path and Path(best_path).is_file():
        state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
        prefix = "network."
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, str(best_path)
    return module.network.state_dict(), "final weights"
