"""Stage II: the RGB student trained with the VPR loss + sample-weighted distillation + alignment.

loss = L_vpr(student global s)
     + f(t) lambda_g * global distillation   (structvpr.distill_loss, default `contrastive`: InfoNCE of
                                             Projector(s) against a bank of cached teacher targets,
                                             same-place rows positive; `cosine`; `relational`)
     + f(t) lambda_l * label distillation    (student label units and/or label descriptor vs the
                                             teacher's; the descriptor term trains the weighting module)
     + lambda_a * semantic alignment         (`contrastive`: other places are negatives; `pairs`)
f(t) is `structvpr.distill_schedule`. Sample weights w_i come from the partition. The teacher never
runs here: its outputs come from the cache written by the partition, so a step costs about a Stage I
RGB step. The student starts from the Stage I RGB weights; `<run>/model.pt` holds only the plain
VPRNet: the projector and the label head are training-only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from structvpr.config import Config, config_to_dict, dump_config
from structvpr.io_utils import atomic_write_text
from structvpr.model.branches import label_feature_config_from
from structvpr.model.label_features import LabelFeatureHead, LabelFeatureOutput, mask_head_loss
from structvpr.train.distill_losses import (
    GlobalDistillation,
    LabelDistillation,
    Projection,
    Projector,
    contrastive_alignment,
    contrastive_distillation,
    descriptor_distillation,
    relational_distillation,
    schedule_factor,
    semantic_alignment,
)
from structvpr.train.partition_file import PartitionFileError
from structvpr.train.teacher_cache import TeacherCache, load_teacher_cache
from structvpr.train.vpr_module import NonFiniteLossError, VPRLightningModule

# Stage II options an ablation may override (stage2_settings keys).
SETTING_NAMES = (
    "lambda_g",
    "lambda_l",
    "lambda_a",
    "lambda_mask",
    "weight_normalization",
    "uniform_weights",
    "always_project",
    "distill_loss",
    "contrastive_positives",
    "contrastive_temperature",
    "contrastive_bank_size",
    "projector_hidden",
    "relational_temperatures",
    "distill_schedule",
    "label_distill",
    "alignment",
    "alignment_temperature",
)


def stage2_learning_rate(config: Config) -> float:
    """The Stage II optimiser's learning rate: `structvpr.stage2_lr`, or `train.lr` when that is None."""
    stage2_lr = config.structvpr.stage2_lr
    return config.train.lr if stage2_lr is None else stage2_lr


def stage2_epochs(config: Config) -> int:
    """How many epochs Stage II trains: `structvpr.stage2_epochs`, or `train.epochs` when that is None."""
    epochs = config.structvpr.stage2_epochs
    return config.train.epochs if epochs is None else epochs


def stage2_settings(config: Config) -> dict:
    """The Stage II options of the `structvpr` section, as a plain dict (ablations override entries)."""
    return {name: getattr(config.structvpr, name) for name in SETTING_NAMES}


class Stage2Module(VPRLightningModule):
    """The student: a VPRNet (`network`, the only exported part) + training-only label head,
    projector and losses.

    Validation, optimiser and per-batch seeding are Stage I's. `teacher_dims` = {"target_dim",
    "unit_dim", "label_dim" (None: teacher without label features)} from the teacher cache.
    `settings_overrides` replace entries of stage2_settings (ablations: lambdas, uniform_weights...).
    `learning_rate`: the optimiser's (None = `stage2_learning_rate` of `config`).
    """

    def __init__(
        self,
        config: dict,
        teacher_dims: dict,
        settings_overrides: dict | None = None,
        learning_rate: float | None = None,
    ) -> None:
        super().__init__(config, "rgb")
        if learning_rate is None:
            learning_rate = stage2_learning_rate(self.experiment)
        self.learning_rate = float(learning_rate)
        self.save_hyperparameters(
            {
                "config": config,
                "branch": "rgb",
                "teacher_dims": teacher_dims,
                "settings_overrides": dict(settings_overrides or {}),
                "learning_rate": self.learning_rate,
            }
        )
        from structvpr.segment.classes import load_merge_table

        unknown = set(settings_overrides or {}) - set(SETTING_NAMES)
        if unknown:
            raise ValueError(f"unknown Stage II settings {sorted(unknown)} (known: {', '.join(SETTING_NAMES)})")
        self.settings = {**stage2_settings(self.experiment), **dict(settings_overrides or {})}
        settings = self.settings
        # Not `merge_table`: the Stage I module reads that name to decide it is the seg branch.
        self.label_merge_table = load_merge_table(self.experiment.structvpr.merge_table)
        self.label_config = label_feature_config_from(self.experiment.structvpr, self.label_merge_table)
        student_dim, target_dim = self.network.descriptor_dim, int(teacher_dims["target_dim"])
        self.projector = (
            Projector(student_dim, target_dim, int(settings["projector_hidden"]))
            if settings["distill_loss"] == "contrastive"
            else None
        )
        self.global_distill = (
            GlobalDistillation(student_dim, target_dim, settings["weight_normalization"], settings["always_project"])
            if settings["distill_loss"] == "cosine"
            else None
        )
        has_teacher_labels = teacher_dims.get("unit_dim") is not None
        self.use_label_distill = settings["lambda_l"] > 0 and has_teacher_labels
        self.use_alignment = settings["lambda_a"] > 0
        self.label_head = None
        if self.use_label_distill or self.use_alignment or self.label_config.mask_head:
            self.label_head = LabelFeatureHead(self.label_config, self.network.backbone_channels)
        self.label_distill = None
        self.label_projection = None
        if self.use_label_distill:
            self.label_distill = LabelDistillation(
                self.label_config.label_dim,
                int(teacher_dims["unit_dim"]),
                settings["weight_normalization"],
                settings["always_project"],
            )
            assert self.label_head is not None
            self.label_projection = Projection(
                self.label_head.descriptor_dim, int(teacher_dims["label_dim"]), settings["always_project"]
            )
        self.teacher: TeacherCache | None = None
        self._bank: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def attach_teacher(self, cache: TeacherCache) -> None:
        """Use `cache` (aligned with the training items) for teacher outputs and sample weights."""
        self.teacher = cache
        self._bank = None

    def _bank_rows(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(targets [M, Dt], places [M], row ids [M]) of every cached row that may be distilled:
        rows with weight 0 (G4, no positive) stay out, unless the weights are uniform."""
        if self._bank is None or self._bank[0].device != device:
            assert self.teacher is not None
            rows = np.arange(len(self.teacher.sample_paths))
            if not self.settings["uniform_weights"]:
                rows = rows[np.asarray(self.teacher.weights) > 0]
            self._bank = (
                torch.from_numpy(np.asarray(self.teacher.targets[rows], dtype=np.float32)).to(device),
                torch.from_numpy(np.asarray(self.teacher.places[rows], dtype=np.int64)).to(device),
                torch.from_numpy(rows.astype(np.int64)).to(device),
            )
        return self._bank

    def _global_loss(self, student: torch.Tensor, teacher: dict, indices: torch.Tensor, weights: torch.Tensor):
        settings = self.settings
        normalization = settings["weight_normalization"]
        if settings["distill_loss"] == "relational":
            teacher_temperature, student_temperature = settings["relational_temperatures"]
            return relational_distillation(
                student, teacher["target"], weights, teacher_temperature, student_temperature, normalization
            )
        if settings["distill_loss"] == "cosine":
            assert self.global_distill is not None
            return self.global_distill(student, teacher["target"], weights)
        assert self.projector is not None
        bank, bank_places, bank_rows = self._bank_rows(student.device)
        size = int(settings["contrastive_bank_size"])
        if len(bank) > size:  # a random subset, always with the batch's own places
            chosen = torch.randperm(len(bank), device=bank.device)[:size]
            own = torch.isin(bank_places, teacher["place"]).nonzero().squeeze(1)
            chosen = torch.unique(torch.cat([chosen, own]))
            bank, bank_places, bank_rows = bank[chosen], bank_places[chosen], bank_rows[chosen]
        if settings["contrastive_positives"] == "place":
            positives = teacher["place"].unsqueeze(1) == bank_places.unsqueeze(0)
        else:
            positives = indices.unsqueeze(1) == bank_rows.unsqueeze(0)
        return contrastive_distillation(
            self.projector(student),
            bank,
            positives,
            weights,
            float(settings["contrastive_temperature"]),
            normalization,
        )

    def _label_loss(self, labels: LabelFeatureOutput, teacher: dict, weights: torch.Tensor) -> torch.Tensor:
        mode = self.settings["label_distill"]
        assert self.label_distill is not None and self.label_projection is not None
        loss = labels.descriptor.sum() * 0.0
        if mode in ("units", "both"):
            presence = labels.unit_presence & teacher["unit_presence"]
            loss = loss + self.label_distill(labels.units, teacher["units"], presence, weights)
        if mode in ("descriptor", "both"):
            loss = loss + descriptor_distillation(
                self.label_projection(labels.descriptor),
                teacher["label_descriptor"],
                weights,
                self.settings["weight_normalization"],
            )
        return loss

    def _alignment_loss(self, labels: LabelFeatureOutput, place_labels: torch.Tensor) -> torch.Tensor:
        if self.settings["alignment"] == "pairs":
            return semantic_alignment(labels.units, labels.unit_areas, labels.unit_presence, place_labels)
        return contrastive_alignment(
            labels.units,
            labels.unit_areas,
            labels.unit_presence,
            place_labels,
            float(self.settings["alignment_temperature"]),
        )

    def schedule(self) -> float:
        """Multiplier of lambda_g and lambda_l at the current optimiser step."""
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 0
        return schedule_factor(self.settings["distill_schedule"], int(self.global_step), total)

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
        factor = self.schedule()
        if settings["lambda_g"] > 0:
            parts["global"] = (
                factor * settings["lambda_g"] * self._global_loss(global_descriptor, teacher, indices, weights)
            )
        if self.label_head is not None:
            from structvpr.segment.slme import teacher_input

            table = self.label_merge_table
            label_maps = batch["label_map"]
            one_hot = teacher_input(label_maps, table, table.num_classes, label_maps.shape[-2:])
            labels = self.label_head(levels, one_hot)
            if self.use_label_distill:
                parts["label"] = factor * settings["lambda_l"] * self._label_loss(labels, teacher, weights)
            if self.use_alignment:
                parts["align"] = settings["lambda_a"] * self._alignment_loss(labels, place_labels)
            if labels.mask_logits is not None:
                parts["mask"] = settings["lambda_mask"] * mask_head_loss(labels.mask_logits, one_hot)
        loss = torch.stack(list(parts.values())).sum()
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
        self.log("train/distill_factor", factor, on_step=False, on_epoch=True, batch_size=batch_size)
        return loss


def stage2_run_dir(config: Config, run_name: str = "stage2") -> Path:
    """`<train.output_dir>/<run_name>`."""
    return Path(config.train.output_dir) / run_name


def _check_cache_matches(cache: TeacherCache, paths: Sequence[Path]) -> None:
    """PartitionFileError unless the cache's rows are `paths`, in order; it says what differs: the
    counts, or the first sample whose path differs (e.g. the training set moved to another folder)."""
    current = [str(p) for p in paths]
    if current == cache.sample_paths:
        return
    if len(current) != len(cache.sample_paths):
        difference = f"the cache holds {len(cache.sample_paths)} samples, this training set {len(current)}"
    else:
        row = next(i for i, (old, new) in enumerate(zip(cache.sample_paths, current, strict=True)) if old != new)
        difference = (
            f"same {len(current)} samples, but sample {row} is {cache.sample_paths[row]} in the cache "
            f"and {current[row]} in this training set"
        )
    raise PartitionFileError(
        f"{cache.directory}: the teacher cache was made for another training set ({difference}); "
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
    from structvpr.train.datamodule import Stage2DataModule
    from structvpr.train.trainer import best_weights, build_trainer, check_run_dir

    root = Path(config.train.output_dir)
    structvpr = config.structvpr
    learning_rate = stage2_learning_rate(config)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=stage2_epochs(config)))
    run_dir = stage2_run_dir(config, run_name)
    last_checkpoint = run_dir / "checkpoints" / "last.ckpt"
    check_run_dir(config, last_checkpoint)
    cache = load_teacher_cache(cache_dir or root / "partition" / "teacher_cache")
    if cache.target_name != structvpr.distill_target:
        raise PartitionFileError(
            f"{cache.directory}: the teacher cache holds the {cache.target_name!r} descriptor but "
            f"structvpr.distill_target is {structvpr.distill_target!r}; run `structvpr partition` again"
        )
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    teacher_dims = {"target_dim": cache.target_dim, "unit_dim": cache.unit_dim, "label_dim": cache.label_dim}
    module = Stage2Module(config_to_dict(config), teacher_dims, settings_overrides, learning_rate)
    module.attach_teacher(cache)
    init_path = Path(init_model) if init_model else root / "stage1-rgb" / "model.pt"
    if init_path.is_file() and not config.train.resume:
        initial, _ = load_model_file(init_path)
        module.network.load_state_dict(initial.state_dict())
    datamodule = Stage2DataModule(config)
    datamodule.setup("fit")
    assert datamodule.train_set is not None
    _check_cache_matches(cache, datamodule.train_set.paths)
    if module.label_distill is not None and cache.units is not None and cache.units.shape[1] != _num_units(module):
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
        "learning_rate": learning_rate,
        "config": config_to_dict(config),
        "recall_history": module.recall_history,
    }
    save_model_file(network, run_dir / "model.pt", metadata)
    summary = {
        "run": run_name,
        "train_dataset": datamodule.train_description,
        "val_dataset": datamodule.val_dataset.summary(),
        "epochs_run": int(trainer.current_epoch),
        "learning_rate": learning_rate,
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
    module = Stage2Module(
        hyper["config"], hyper["teacher_dims"], hyper.get("settings_overrides"), hyper.get("learning_rate")
    )
    module.load_state_dict(content["state_dict"])
    return module
