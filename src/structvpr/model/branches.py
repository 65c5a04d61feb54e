"""The two StructVPR++ branches built around VPRNet and the label-feature head.

- SegBranch (teacher): VPRNet taking the K-channel SLME one-hot map + LabelFeatureHead whose masks A
  come from that same one-hot input. Retrieval descriptor = L2-normalise([global ; w * label]).
- RGBTrainingModel (student in training): VPRNet on RGB + LabelFeatureHead with masks from the
  training label maps. Only `network` (the plain VPRNet) is exported: inference never touches
  segmentation or label features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from structvpr.dataclass_dict import from_plain_dict, to_plain_dict
from structvpr.io_utils import atomic_torch_save
from structvpr.model.label_features import (
    LabelFeatureConfig,
    LabelFeatureHead,
    LabelFeatureOutput,
)
from structvpr.model.vpr_net import ModelConfig, VPRNet, build_model

if TYPE_CHECKING:
    from structvpr.config import Config, StructVPRConfig
    from structvpr.segment.classes import MergeTable

SEG_BRANCH_FORMAT = "structvpr-seg-branch-v1"


class SegBranchFileError(ValueError):
    """A file is not a readable seg-branch checkpoint; the message names it."""


@dataclass
class BranchOutput:
    """global_descriptor [B, Dg] (L2-normalised), labels (LabelFeatureOutput), descriptor [B, D]
    = L2-normalise([global ; label_weight * label descriptor]) used for retrieval by the seg-branch."""

    global_descriptor: torch.Tensor
    labels: LabelFeatureOutput
    descriptor: torch.Tensor


def combine_descriptors(
    global_descriptor: torch.Tensor, label_descriptor: torch.Tensor, label_weight: float
) -> torch.Tensor:
    """L2-normalise([g ; label_weight * l]) with g and l each unit-norm: label_weight sets the balance."""
    return F.normalize(torch.cat([global_descriptor, label_weight * label_descriptor], dim=1), dim=1)


class SegBranch(nn.Module):
    """Teacher: SLME one-hot [B, K(+1), H, W] -> retrieval descriptor [B, Dg + D_label], unit norm.

    `config` is the VPRNet's ModelConfig (in_channels = K, or K + 1 with a boundary channel), so code
    written for VPRNet (image_size, descriptor_dim) works on a SegBranch too.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        label_config: LabelFeatureConfig,
        label_weight: float = 1.0,
        load_pretrained_weights: bool = True,
    ) -> None:
        super().__init__()
        if model_config.in_channels < label_config.num_classes:
            raise ValueError(
                f"seg branch takes {model_config.in_channels} input channels but the merge "
                f"table has K = {label_config.num_classes} classes"
            )
        self.network: VPRNet = build_model(model_config, load_pretrained_weights=load_pretrained_weights)
        self.label_head = LabelFeatureHead(label_config, self.network.backbone_channels)
        self.label_config = label_config
        self.label_weight = float(label_weight)

    @property
    def config(self) -> ModelConfig:
        """The VPRNet's ModelConfig."""
        return self.network.config

    @property
    def global_dim(self) -> int:
        """Length of the global (aggregator) descriptor."""
        return self.network.descriptor_dim

    @property
    def descriptor_dim(self) -> int:
        """Length of the retrieval descriptor [global ; label]."""
        return self.network.descriptor_dim + self.label_head.descriptor_dim

    def forward_outputs(self, one_hot: torch.Tensor) -> BranchOutput:
        """one_hot float [B, K(+1), H, W] (0 at ignore) -> global, label features and descriptor."""
        levels = self.network.forward_features(one_hot)
        global_descriptor = self.network.aggregate(levels)
        labels = self.label_head(levels, one_hot[:, : self.label_config.num_classes])
        return BranchOutput(
            global_descriptor, labels, combine_descriptors(global_descriptor, labels.descriptor, self.label_weight)
        )

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        """Retrieval descriptor float32 [B, descriptor_dim], L2-normalised."""
        return self.forward_outputs(one_hot).descriptor


class RGBTrainingModel(nn.Module):
    """Student in training: the deployable VPRNet plus a label-feature head used only for the losses."""

    def __init__(self, network: VPRNet, label_config: LabelFeatureConfig) -> None:
        super().__init__()
        self.network = network
        self.label_head = LabelFeatureHead(label_config, network.backbone_channels)

    def forward_outputs(self, images: torch.Tensor, class_masks: torch.Tensor | None) -> BranchOutput:
        """images [B, 3, H, W]; class_masks float [B, K, h, w] one-hot of the training label maps
        (None: the mask head's prediction). The descriptor is the global one: the student's retrieval
        descriptor never includes label features."""
        levels = self.network.forward_features(images)
        global_descriptor = self.network.aggregate(levels)
        labels = self.label_head(levels, class_masks)
        return BranchOutput(global_descriptor, labels, global_descriptor)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Inference path = the plain VPRNet: images -> global descriptor [B, D]."""
        return self.network(images)


def label_feature_config_from(settings: StructVPRConfig, merge_table: MergeTable) -> LabelFeatureConfig:
    """LabelFeatureConfig from a config's `structvpr` section and a MergeTable (K classes).

    Dynamic groups are excluded unless `exclude_dynamic` is false; the options the section does not
    hold (gem_p, weighting_hidden, mlp_dim, mask_head_level) keep the LabelFeatureConfig defaults.
    """
    return LabelFeatureConfig(
        num_classes=merge_table.num_classes,
        exclude_classes=tuple(merge_table.dynamic_groups) if settings.exclude_dynamic else (),
        variant=settings.variant,
        levels=tuple(settings.label_levels),
        label_dim=settings.label_dim,
        pooling=settings.label_pooling,
        min_area=settings.label_min_area,
        mask_head=settings.mask_head,
    )


def save_seg_branch(branch: SegBranch, path: str | Path, metadata: dict | None = None) -> None:
    """Atomically write a seg-branch checkpoint (plain dicts + state_dict: loads with weights_only)."""
    atomic_torch_save(
        {
            "format": SEG_BRANCH_FORMAT,
            "model_config": to_plain_dict(branch.config),
            "label_config": to_plain_dict(branch.label_config),
            "label_weight": branch.label_weight,
            "state_dict": branch.state_dict(),
            "metadata": dict(metadata or {}),
        },
        path,
    )


def load_seg_branch(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[SegBranch, dict]:
    """Inverse of save_seg_branch -> (SegBranch in eval mode, metadata). SegBranchFileError names the file."""
    path = Path(path)
    if not path.is_file():
        raise SegBranchFileError(f"{path}: seg-branch checkpoint does not exist")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise SegBranchFileError(f"{path}: cannot read seg-branch checkpoint ({error})") from error
    if not isinstance(content, dict) or content.get("format") != SEG_BRANCH_FORMAT:
        raise SegBranchFileError(f"{path}: not a structvpr seg-branch checkpoint ({SEG_BRANCH_FORMAT})")
    try:
        model_config = from_plain_dict(ModelConfig, content["model_config"], "model_config")
        label_config = from_plain_dict(LabelFeatureConfig, content["label_config"], "label_config")
    except (KeyError, TypeError, ValueError) as error:
        raise SegBranchFileError(f"{path}: invalid seg-branch config ({error})") from None
    branch = SegBranch(
        model_config,
        label_config,
        label_weight=content["label_weight"],
        load_pretrained_weights=False,
    )
    branch.load_state_dict(content["state_dict"], strict=True)
    return branch.eval(), content["metadata"]


def build_seg_branch(config: Config, merge_table: MergeTable, load_pretrained_weights: bool = True) -> SegBranch:
    """The seg-branch of an experiment Config: its `model` section with in_channels = K of the merge
    table (a segment.classes.MergeTable), plus the label-feature head of its `structvpr` section."""
    import dataclasses

    model_config = dataclasses.replace(config.model, in_channels=merge_table.num_classes)
    return SegBranch(
        model_config,
        label_feature_config_from(config.structvpr, merge_table),
        label_weight=config.structvpr.label_descriptor_weight,
        load_pretrained_weights=load_pretrained_weights,
    )
