"""Stage II: the RGB student trained with the VPR loss + sample-weighted distillation + alignment.

loss = L_vpr(student global)
     + lambda_g * weighted global distillation   (student global vs cached teacher global)
     + lambda_l * weighted label distillation    (student label units vs cached teacher units)
     + lambda_a * semantic alignment             (student label units of same-place pairs)
The teacher never runs here: its outputs and the partition weights come from the cache written by
`structvpr partition`, so a step costs about a Stage I RGB step. The student starts from the Stage I
RGB weights; `<run>/model.pt` holds only the plain VPRNet (no segmentation or label-feature code).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from structvpr.config import Config, config_to_dict, dump_config
from structvpr.io_utils import atomic_write_text
from structvpr.model.branches import label_feature_config_from
from structvpr.model.label_features import LabelFeatureHead, mask_head_loss
from structvpr.train.datamodule import VPRDataModule
from structvpr.train.distill_losses import (
    GlobalDistillation,
    LabelDistillation,
    semantic_alignment,
)
from structvpr.train.lightning_vpr import NonFiniteLossError, VPRLightningModule
from structvpr.train.partition import (
    PartitionFileError,
    TeacherCache,
    load_teacher_cache,
)


class Stage2DataModule(VPRDataModule):
    """The Stage I RGB data module whose training batches also carry 'label_map' (trainIds [B, H, W])."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, "rgb")
        self.with_labels = True  # validation stays RGB-only: the flag is read when the sets are built

    def val_dataloader(self):
        self.with_labels = False
        try:
            return super().val_dataloader()
        finally:
            self.with_labels = True


def stage2_settings(config: Config) -> dict:
    """Stage II options of the `structvpr` section, with defaults for keys the section may lack."""
    structvpr = config.structvpr
    return {
        "lambda_g": float(structvpr.lambda_g),
        "lambda_l": float(structvpr.lambda_l),
        "lambda_a": float(structvpr.lambda_a),
        "lambda_mask": float(getattr(structvpr, "lambda_mask", 0.1)),
        "weight_normalization": getattr(structvpr, "weight_normalization", "batch"),
        "uniform_weights": bool(getattr(structvpr, "uniform_weights", False)),
        "always_project": bool(getattr(structvpr, "always_project", False)),
    }


class Stage2Module(VPRLightningModule):
    """The student: a VPRNet (`network`, the only exported part) + training-only label head and losses.

    Validation, optimiser and per-epoch seeding are Stage I's. `teacher_dims` = {"global_dim",
    "unit_dim" (None: teacher without label features), "num_units"} from the teacher cache.
    `settings_overrides` replace entries of stage2_settings (ablations: lambdas, uniform_weights).
    """

    def __init__(self, config: dict, teacher_dims: dict, settings_overrides: dict | None = None) -> None:
        super().__init__(config, "rgb")
        self.save_hyperparameters(
            {
                "config": config,
                "branch": "rgb",
                "teacher_dims": teacher_dims,
                "settings_overrides": dict(settings_overrides or {}),
            }
        )
        from structvpr.segment.classes import load_merge_table

        self.settings = {**stage2_settings(self.experiment), **dict(settings_overrides or {})}
        # Not `merge_table`: the Stage I module reads that name to decide it is the seg branch.
        self.label_merge_table = load_merge_table(self.experiment.structvpr.merge_table)
        self.label_config = label_feature_config_from(self.experiment.structvpr, self.label_merge_table)
        self.global_distill = GlobalDistillation(
            self.network.descriptor_dim,
            int(teacher_dims["global_dim"]),
            self.settings["weight_normalization"],
            self.settings["always_project"],
        )
        has_teacher_units = teacher_dims.get("unit_dim") is not None
        self.use_label_distill = self.settings["lambda_l"] > 0 and has_teacher_units
        self.use_alignment = self.settings["lambda_a"] > 0
        self.label_head = None
        if self.use_label_distill or self.use_alignment or self.label_config.mask_head:
            self.label_head = LabelFeatureHead(self.label_config, self.network.backbone_channels)
        self.label_distill = (
            LabelDistillation(
                self.label_config.label_dim,
                int(teacher_dims["unit_dim"]),
                self.settings["weight_normalization"],
                self.settings["always_project"],
            )
            if self.use_label_distill
            else None
        )
        self.teacher: TeacherCache | None = None

    def attach_teacher(self, cache: TeacherCache) -> None:
        """Use `cache` (aligned with the training items) for teacher outputs and sample weights."""
        self.teacher = cache

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, place_labels, indices = batch["image"], batch["place"], batch["index"]
        if self.teacher is None:
            raise RuntimeError("Stage2Module has no teacher cache: call attach_teacher() before fit")
        settings = self.settings
        levels = self.network.forward_features(images)
        global_descriptor = self.network.aggregate(levels)
        parts = {"vpr": self.vpr_loss(global_descriptor, place_labels)}
        teacher = self.teacher.lookup(indices, global_descriptor.device)
        weights = torch.ones_like(teacher["weights"]) if settings["uniform_weights"] else teacher["weights"]
        if settings["lambda_g"] > 0:
            parts["global"] = settings["lambda_g"] * self.global_distill(global_descriptor, teacher["global"], weights)
        if self.label_head is not None:
            from structvpr.segment.slme import slme_one_hot

            table = self.label_merge_table
            one_hot = slme_one_hot(table.merge(batch["label_map"]), table.num_classes)
            labels = self.label_head(levels, one_hot)
            if self.use_label_distill:
                presence = labels.unit_presence & teacher["unit_presence"]
                parts["label"] = settings["lambda_l"] * self.label_distill(
                    labels.units, teacher["units"], presence, weights
                )
            if self.use_alignment:
                parts["align"] = settings["lambda_a"] * semantic_alignment(
                    labels.units, labels.unit_areas, labels.unit_presence, place_labels
                )
            if labels.mask_logits is not None:
                parts["mask"] = settings["lambda_mask"] * mask_head_loss(labels.mask_logits, one_hot)
        loss = sum(parts.values())
        if self.experiment.train.inject_nan_at_step == self.global_step:
            loss = loss * float("nan")
        finite = bool(torch.isfinite(loss))
        if self._trainer is not None:
            # Under DDP every rank must stop at the same step, or the others wait in all-reduce.
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            raise NonFiniteLossError(
                f"non-finite Stage II loss ({ {k: round(float(v), 4) for k, v in parts.items()} }) at global step "
                f"{self.global_step} (epoch {self.current_epoch}, batch {batch_idx}); stopping before backward"
            )
        batch_size = int(place_labels.shape[0])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        for name, value in parts.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=batch_size)
        self.log("train/mean_weight", weights.mean(), on_step=False, on_epoch=True, batch_size=batch_size)
        return loss


def stage2_run_dir(config: Config, run_name: str = "stage2") -> Path:
    """`<train.output_dir>/<run_name>`."""
    return Path(config.train.output_dir) / run_name


def _check_cache_matches(cache: TeacherCache, paths: Sequence[Path]) -> None:
    if [str(p) for p in paths] != cache.sample_paths:
        raise PartitionFileError(
            f"{cache.directory}: the teacher cache was made for another training set "
            f"({len(cache.sample_paths)} samples, this one has {len(paths)}); "
            "run `structvpr partition` again"
        )


def run_stage2(
    config: Config,
    run_name: str = "stage2",
    cache_dir: str | Path | None = None,
    init_model: str | Path | None = None,
    settings_overrides: dict | None = None,
) -> Path:
    """Train the student (Stage II) and write `<run>/model.pt` (plain VPRNet) and `summary.json`.

    cache_dir: teacher cache (default `<output_dir>/partition/teacher_cache`); init_model: the
    Stage I RGB model file the student starts from (default `<output_dir>/stage1-rgb/model.pt`; the
    student starts from ImageNet weights when that file does not exist). settings_overrides: see
    Stage2Module (e.g. {"uniform_weights": True} for the no-weights ablation). Epochs:
    `structvpr.stage2_epochs` (None = train.epochs); learning rate: `structvpr.stage2_lr` (None = train.lr).
    Every DDP process calls this; rank 0 writes.
    """
    import lightning as L

    from structvpr.model.model_file import load_model_file, save_model_file
    from structvpr.train.stage1 import best_weights, build_trainer

    root = Path(config.train.output_dir)
    epochs = config.structvpr.stage2_epochs or config.train.epochs
    learning_rate = config.structvpr.stage2_lr or config.train.lr
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=epochs, lr=learning_rate))
    run_dir = stage2_run_dir(config, run_name)
    last_checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if config.train.resume and not last_checkpoint.is_file():
        raise FileNotFoundError(f"{last_checkpoint}: no checkpoint to resume from")
    if not config.train.resume and last_checkpoint.exists() and not config.train.overwrite:
        raise ValueError(
            f"{run_dir}: this run folder already has checkpoints; pass --resume, "
            "--set train.overwrite=true, or choose another train.output_dir"
        )
    cache = load_teacher_cache(cache_dir or root / "partition" / "teacher_cache")
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    teacher_dims = {
        "global_dim": cache.global_dim,
        "unit_dim": cache.unit_dim,
        "num_units": None if cache.units is None else int(cache.units.shape[1]),
    }
    module = Stage2Module(config_to_dict(config), teacher_dims, settings_overrides)
    module.attach_teacher(cache)
    init_path = Path(init_model) if init_model else root / "stage1-rgb" / "model.pt"
    if init_path.is_file() and not config.train.resume:
        initial, _ = load_model_file(init_path)
        module.network.load_state_dict(initial.state_dict())
    datamodule = Stage2DataModule(config)
    datamodule.setup("fit")
    _check_cache_matches(cache, datamodule.train_set.paths)
    if module.label_distill is not None and cache.units.shape[1] != _num_units(module):
        raise PartitionFileError(
            f"{cache.directory}: teacher has {cache.units.shape[1]} label units per image, "
            f"the student's label head {_num_units(module)}: use the same "
            "structvpr.variant and merge table for both"
        )
    trainer = build_trainer(config, run_dir, run_sanity_validation=False)
    if trainer.is_global_zero:
        dump_config(config, run_dir / "config.yaml")
    trainer.fit(
        module, datamodule=datamodule, weights_only=True, ckpt_path=last_checkpoint if config.train.resume else None
    )
    if not trainer.is_global_zero:
        return run_dir
    state, source = best_weights(trainer, module)
    network = module.network.cpu()
    network.load_state_dict(state)
    metadata = {
        "stage": 2,
        "branch": "rgb",
        "weights_from": source,
        "init_model": str(init_path),
        "teacher_cache": str(cache.directory),
        "teacher_sha256": cache.metadata.get("teacher_sha256"),
        "train_dataset": datamodule.train_description,
        "val_dataset": datamodule.val_dataset.summary(),
        "settings": module.settings,
        "config": config_to_dict(config),
        "recall_history": module.recall_history,
    }
    save_model_file(network, run_dir / "model.pt", metadata)
    summary = {
        "run": run_name,
        "train_dataset": datamodule.train_description,
        "val_dataset": datamodule.val_dataset.summary(),
        "epochs_run": int(trainer.current_epoch),
        "settings": module.settings,
        "recall_history": module.recall_history,
        "model_file": str(run_dir / "model.pt"),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    print(f"[stage2] done: {run_dir / 'model.pt'} (weights: {source})", flush=True)
    return run_dir


def _num_units(module: Stage2Module) -> int:
    config, head = module.label_config, module.label_head
    return {"lc": len(head.kept_classes), "mc": len(config.levels)}.get(
        config.variant, len(config.levels) * len(head.kept_classes)
    )


def load_stage2_module(checkpoint: str | Path) -> Stage2Module:
    """A Stage2Module from a Lightning checkpoint (weights_only), without its teacher cache."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    hyper = content["hyper_parameters"]
    module = Stage2Module(hyper["config"], hyper["teacher_dims"], hyper.get("settings_overrides"))
    module.load_state_dict(content["state_dict"])
    return module
