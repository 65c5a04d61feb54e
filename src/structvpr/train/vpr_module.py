"""The VPR Lightning module: one VPRNet branch ("rgb" images or "seg" SLME label maps) + VPR loss,
Recall@N validation and the optimiser. Stage I trains it as is; Stage II (train/stage2.py) subclasses
it and adds the distillation losses, keeping its validation and optimiser.

Batches are dicts (see train/datamodule.py): training 'image'/'label_map' + 'place' from the P x K
sampler; validation 'image'/'label_map' + 'index' over the split's database followed by its queries.
For the seg branch the trainId label maps uint8 [B, H, W] are merged to K groups and one-hot
encoded (SLME) on the training device here.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from structvpr.config import Config, config_from_dict, config_to_dict
from structvpr.model import build_model
from structvpr.train.losses import build_vpr_loss

BRANCHES = ("rgb", "seg")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step and the batch."""


def build_branch_network(config: Config, branch: str) -> nn.Module:
    """rgb: the configured VPRNet. seg: the StructVPR++ teacher (model.branches.SegBranch): a VPRNet
    on the K-channel SLME input plus the label-feature head; descriptor = [global ; label features]."""
    if branch == "rgb":
        return build_model(config.model)
    if branch == "seg":
        from structvpr.model.branches import build_seg_branch
        from structvpr.segment.classes import load_merge_table

        return build_seg_branch(config, load_merge_table(config.structvpr.merge_table))
    raise ValueError(f"unknown branch '{branch}' (choose from {', '.join(BRANCHES)})")


class VPRLightningModule(L.LightningModule):
    """Stage I training of one branch with the VPR loss and Recall@N validation.

    `network` maps the branch input to L2-normalised descriptors and has `.config` (a ModelConfig).
    `config` is stored in checkpoints as a plain dict (hyper_parameters), so checkpoints load with
    torch.load(weights_only=True) and `VPRLightningModule.load_from_checkpoint` rebuilds the net.
    """

    def __init__(self, config: dict, branch: str = "rgb") -> None:
        super().__init__()
        self.save_hyperparameters({"config": config, "branch": branch})
        self.experiment = config_from_dict(config)
        self.branch = branch
        self.network: nn.Module = build_branch_network(self.experiment, branch)
        self.vpr_loss: nn.Module = build_vpr_loss(self.experiment.train)
        self.learning_rate: float = self.experiment.train.lr  # the optimiser's; Stage II sets its own
        self.merge_table = None
        if branch == "seg":
            from structvpr.segment.classes import load_merge_table

            self.merge_table = load_merge_table(self.experiment.structvpr.merge_table)
        self._val_descriptors: list[torch.Tensor] = []
        self._val_indices: list[torch.Tensor] = []
        self.last_recalls: dict[int, float] = {}
        self.recall_history: list[dict] = []  # one entry per validation: epoch, step, recalls

    @classmethod
    def from_config(cls, config: Config, branch: str = "rgb") -> VPRLightningModule:
        """Build from a Config dataclass (stored as a plain dict)."""
        return cls(config_to_dict(config), branch)

    def model_input(self, batch: dict) -> torch.Tensor:
        """rgb: batch['image'] [B, 3, H, W]; seg: batch['label_map'] trainIds [B, H, W] -> SLME [B, K, H, W]."""
        if self.merge_table is None:
            return batch["image"]
        from structvpr.segment.slme import teacher_input

        config = self.network.config
        return teacher_input(batch["label_map"], self.merge_table, config.in_channels, config.image_size)

    def forward(self, batch: dict) -> torch.Tensor:
        """A batch dict -> L2-normalised descriptors float32 [B, D] of this branch."""
        return self.network(self.model_input(batch))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        place_labels = batch["place"]
        loss = self.vpr_loss(self(batch), place_labels)
        if self.experiment.train.inject_nan_at_step == self.global_step:
            loss = loss * float("nan")  # fault injection: exercises the guard below end to end
        # Under DDP every rank must stop at the same step (or the others wait forever in all-reduce),
        # so the ranks agree on the decision first.
        if not self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True):
            # Raised before backward: the weights, optimizer and saved checkpoints stay as they were.
            value = f"{loss.item()}" if not torch.isfinite(loss) else f"on another rank; {loss.item():.4f} here"
            where = f", rank {self.global_rank}" if self.trainer.world_size > 1 else ""
            raise NonFiniteLossError(
                f"non-finite training loss ({value}) at global step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}, branch {self.branch}{where}); stopping."
            )
        batch_size = int(place_labels.shape[0])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log(
            "train/mined_fraction",
            self.vpr_loss.last_mined_fraction,
            on_step=False,
            on_epoch=True,
            batch_size=batch_size,
        )
        return loss

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # Randomness (dropout, stochastic depth) as a function of (seed, epoch, batch, rank): a run
        # resumed from an epoch-end checkpoint repeats the uninterrupted run exactly, whatever RNG
        # draws Lightning or the DataLoader made before this batch. (The P x K sampler is seeded by
        # (seed, epoch) and Lightning calls its set_epoch.)
        seed = self.experiment.train.seed
        torch.manual_seed(((seed * 1_000_003 + self.current_epoch) * 1_000_003 + batch_idx) * 1_009 + self.global_rank)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._val_descriptors.append(self(batch).float())
        self._val_indices.append(batch["index"].long())

    def on_validation_epoch_start(self) -> None:
        self._val_descriptors, self._val_indices = [], []

    def on_validation_epoch_end(self) -> None:
        datamodule = self.trainer.datamodule
        descriptors = torch.cat(self._val_descriptors)
        indices = torch.cat(self._val_indices)
        self._val_descriptors, self._val_indices = [], []
        if self.trainer.world_size > 1:
            # Every rank saw a shard (padded with repeats); gather all and keep one copy per item.
            descriptors = self.all_gather(descriptors).reshape(-1, descriptors.shape[-1])
            indices = self.all_gather(indices).reshape(-1)
        ordered = torch.zeros(datamodule.num_val_items, descriptors.shape[1], dtype=torch.float32)
        ordered[indices.cpu()] = descriptors.cpu()
        ordered_np = ordered.numpy()
        num_database = datamodule.val_dataset.num_database
        from structvpr.evaluate.recall import recall_at_n

        recalls = recall_at_n(
            ordered_np[num_database:],
            ordered_np[:num_database],
            datamodule.val_positives,
            ns=tuple(self.experiment.data.recall_values),
        )
        self.last_recalls = {int(n): float(v) for n, v in recalls.items()}
        when = "before training" if self.trainer.sanity_checking else f"epoch {self.current_epoch}"
        self.recall_history.append(
            {
                "when": when,
                "epoch": int(self.current_epoch),
                "global_step": int(self.global_step),
                "recalls": dict(self.last_recalls),
            }
        )
        if self.trainer.is_global_zero:
            line = "  ".join(f"R@{n} {100 * v:.2f}" for n, v in self.last_recalls.items())
            print(f"[{self.branch}] {when} val {datamodule.val_dataset.summary()}: {line}", flush=True)
        if not self.trainer.sanity_checking:
            for n, value in self.last_recalls.items():
                # Identical on every rank (computed from the gathered set): no sync needed.
                self.log(f"val/R@{n}", value, prog_bar=n == 1, rank_zero_only=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["recall_history"] = list(self.recall_history)  # plain dicts: weights_only-safe

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.recall_history = list(checkpoint.get("recall_history", []))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        train, lr = self.experiment.train, self.learning_rate
        params = [p for p in self.parameters() if p.requires_grad]
        if train.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=train.weight_decay)
        if train.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=train.weight_decay)
        if train.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=train.momentum, weight_decay=train.weight_decay)
        raise ValueError(f"unknown optimizer '{train.optimizer}' (choose from adam, adamw, sgd)")
