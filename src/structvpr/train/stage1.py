"""Stage I: train one branch (rgb or seg) with the VPR loss under a Lightning Trainer.

The run folder `<train.output_dir>/stage1-<branch>/` holds `config.yaml`, `checkpoints/best.ckpt`
(highest validation R@1) and `checkpoints/last.ckpt` (end of the latest epoch), `logs/metrics.csv`,
`summary.json` (Recall@N per validation) and, at the end, `model.pt` with the best weights: an RGB
model file (model.model_file) for the rgb branch, a SegBranch file (model.branches) for the seg one.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from structvpr.config import Config, config_to_dict, dump_config
from structvpr.io_utils import atomic_torch_save, atomic_write_text
from structvpr.train.datamodule import VPRDataModule
from structvpr.train.lightning_vpr import NonFiniteLossError, VPRLightningModule

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
            # torch's first line is generic advice; the reason ("Unsupported global: os.system",
            # "Unsupported operand ...") is further down.
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            reason = next(
                (line for line in lines if line.lower().startswith(("unsupported", "trying to load"))),
                lines[0] if lines else type(error).__name__,
            )
            raise ValueError(
                f"{path}: refused to load: not a checkpoint of weights and plain data ({reason[:200]})"
            ) from None
        except (RuntimeError, EOFError, OSError) as error:
            raise ValueError(
                f"{path}: not a readable checkpoint ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200] if str(error) else ''})"
            ) from None


def stage1_run_dir(config: Config, branch: str, run_name: str | None = None) -> Path:
    """`<train.output_dir>/<run_name>`, by default `<train.output_dir>/stage1-<branch>`."""
    return Path(config.train.output_dir) / (run_name or f"stage1-{branch}")


def _check_run_dir(config: Config, last_checkpoint: Path) -> None:
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


def fit_stage1(
    config: Config, branch: str = "rgb", run_name: str | None = None
) -> tuple[L.Trainer, VPRLightningModule]:
    """Train (or resume) one branch; returns the Trainer and the module after `Trainer.fit`.

    Runs on every DDP process; only global rank 0 writes config.yaml.
    Raises NonFiniteLossError naming the step and batch when the loss becomes NaN/inf; the
    checkpoints saved before it are kept.
    """
    run_dir = stage1_run_dir(config, branch, run_name)
    last_checkpoint = run_dir / "checkpoints" / "last.ckpt"
    _check_run_dir(config, last_checkpoint)
    metrics_file = run_dir / "logs" / "metrics.csv"
    # Lightning's CSV logger deletes metrics.csv when it starts: keep the rows of the finished epochs.
    earlier_rows = _finished_epoch_rows(metrics_file, last_checkpoint) if config.train.resume else []
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    module = VPRLightningModule.from_config(config, branch)
    datamodule = VPRDataModule(config, branch)
    trainer = build_trainer(
        config, run_dir, run_sanity_validation=(config.train.validate_before_training and not config.train.resume)
    )
    if trainer.is_global_zero:
        dump_config(config, run_dir / "config.yaml")
    try:
        trainer.fit(
            module, datamodule=datamodule, weights_only=True, ckpt_path=last_checkpoint if config.train.resume else None
        )
    except NonFiniteLossError as error:
        kept = (
            f"last good checkpoint kept: {last_checkpoint}"
            if last_checkpoint.is_file()
            else "no checkpoint had been saved yet"
        )
        raise NonFiniteLossError(f"{run_dir}: {error} {kept}") from None
    finally:
        if earlier_rows and trainer.is_global_zero:
            _prepend_metric_rows(metrics_file, earlier_rows)
    return trainer, module


def _finished_epoch_rows(metrics_file: Path, checkpoint: Path) -> list[dict[str, str]]:
    """Rows of `metrics_file` up to the epoch saved in `checkpoint` (a killed epoch's rows are dropped)."""
    if not metrics_file.is_file() or not checkpoint.is_file():
        return []
    saved_epoch = int(AtomicCheckpointIO().load_checkpoint(checkpoint).get("epoch", -1))
    with open(metrics_file, newline="", encoding="utf-8") as handle:
        return [
            row for row in csv.DictReader(handle) if row.get("epoch", "").isdigit() and int(row["epoch"]) <= saved_epoch
        ]


def _prepend_metric_rows(metrics_file: Path, earlier_rows: list[dict[str, str]]) -> None:
    """Rewrite `metrics_file` (atomically) as `earlier_rows` followed by its own rows, union header."""
    rows = list(earlier_rows)
    if metrics_file.is_file():
        with open(metrics_file, newline="", encoding="utf-8") as handle:
            rows += list(csv.DictReader(handle))
    columns = sorted({key for row in rows for key in row})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(metrics_file, text.getvalue())


def best_weights(trainer: L.Trainer, module: VPRLightningModule) -> tuple[dict, str]:
    """State dict of the network at the best validation R@1 (or the final one when none was saved)."""
    callback = trainer.checkpoint_callback
    best_path = getattr(callback, "best_model_path", "") if callback is not None else ""
    if best_path and Path(best_path).is_file():
        state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
        prefix = "network."
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, str(best_path)
    return module.network.state_dict(), "final weights"


def run_stage1(config: Config, branch: str = "rgb", run_name: str | None = None) -> Path:
    """Train one branch (Stage I) and write `<run>/model.pt` (best weights) and `summary.json`.

    Returns the run folder `<train.output_dir>/<run_name>` (default `stage1-<branch>`). Every DDP process calls this;
    only global rank 0 writes the files.
    """
    from structvpr.model.branches import save_seg_branch
    from structvpr.model.model_file import save_model_file

    trainer, module = fit_stage1(config, branch, run_name)
    run_dir = stage1_run_dir(config, branch, run_name)
    if not trainer.is_global_zero:
        return run_dir
    state, source = best_weights(trainer, module)
    network = module.network.cpu()
    network.load_state_dict(state)
    datamodule = trainer.datamodule
    metadata = {
        "stage": 1,
        "branch": branch,
        "weights_from": source,
        "train_dataset": datamodule.train_description,
        "val_dataset": datamodule.val_dataset.summary(),
        "config": config_to_dict(config),
        "recall_history": module.recall_history,
    }
    if branch == "seg":  # the teacher: a SegBranch file (partition and Stage II read it)
        metadata["input"] = f"SLME one-hot, merge table {config.structvpr.merge_table}"
        save_seg_branch(network, run_dir / "model.pt", metadata)
    else:  # an RGB model file: evaluate, index, export and Stage II take it
        save_model_file(network, run_dir / "model.pt", metadata)
    best_score = getattr(trainer.checkpoint_callback, "best_model_score", None)
    summary = {
        "branch": branch,
        "train_dataset": datamodule.train_description,
        "val_dataset": datamodule.val_dataset.summary(),
        "epochs_run": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "best_val_r1": float(best_score) if best_score is not None else None,
        "best_checkpoint": source,
        "recall_history": module.recall_history,
        "model_file": str(run_dir / "model.pt"),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    print(f"[{branch}] stage I done: {run_dir / 'model.pt'} (weights: {source})", flush=True)
    return run_dir
