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
from pathlib import Path

import lightning as L

from structvpr.config import Config, config_to_dict, dump_config
from structvpr.io_utils import atomic_write_text
from structvpr.train.datamodule import VPRDataModule
from structvpr.train.trainer import AtomicCheckpointIO, best_weights, build_trainer, check_run_dir
from structvpr.train.vpr_module import NonFiniteLossError, VPRLightningModule


def stage1_run_dir(config: Config, branch: str, run_name: str | None = None) -> Path:
    """`<train.output_dir>/<run_name>`, by default `<train.output_dir>/stage1-<branch>`."""
    return Path(config.train.output_dir) / (run_name or f"stage1-{branch}")


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
    check_run_dir(config, last_checkpoint)
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
