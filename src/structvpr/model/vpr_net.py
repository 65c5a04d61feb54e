"""VPRNet: backbone + aggregation (+ optional FC), L2-normalised global descriptor (CosPlace-style)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from structvpr.model.aggregators import build_aggregator
from structvpr.model.backbones import BACKBONE_NORMALISATION, build_backbone

FEATURE_STRIDES = (4, 8, 16, 32)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a VPRNet; stored in model files as
    `dataclass_dict.to_plain_dict(config)` and read back with `from_plain_dict(ModelConfig, ...)`.

    image_size is (H, W) in pixels; mean/std (per RGB channel, on [0, 1] pixels) default to what the
    backbone's pretrained weights expect (EfficientNet-Lite0: 0.5/0.5; ResNets: ImageNet).
    descriptor_dim None means no FC: the descriptor is the aggregator output.
    frozen_stages fixes the first backbone stages during training (0 = train all layers).
    Fields `<aggregator>_<option>` (gem_p, netvlad_clusters, mixvpr_depth, ...) are the options of
    that aggregator (`aggregator_options()`).
    """

    backbone: str = "efficientnet_lite0"
    aggregator: str = "gem"
    descriptor_dim: int | None = None
    pretrained: bool = True
    in_channels: int = 3
    image_size: tuple[int, int] = (240, 320)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    gem_p: float = 3.0
    gem_learnable: bool = True
    netvlad_clusters: int = 64
    mixvpr_out_channels: int = 256
    mixvpr_out_rows: int = 4
    mixvpr_depth: int = 4
    mixvpr_mlp_ratio: int = 1
    frozen_stages: int = 0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_NORMALISATION:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONE_NORMALISATION)}")
        default_mean, default_std = BACKBONE_NORMALISATION[self.backbone]
        self.mean = tuple(float(v) for v in (self.mean if self.mean is not None else default_mean))
        self.std = tuple(float(v) for v in (self.std if self.std is not None else default_std))
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if min(self.image_size) < 32:
            raise ValueError(f"image_size (H, W) must be at least 32 x 32, got {self.image_size}")
        if self.descriptor_dim is not None and self.descriptor_dim < 1:
            raise ValueError(f"descriptor_dim must be positive or None, got {self.descriptor_dim}")

    def aggregator_options(self) -> dict[str, Any]:
        """The options of the chosen aggregator: fields `<aggregator>_<option>` keyed by option
        (gem -> {"p": gem_p, "learnable": gem_learnable})."""
        prefix = f"{self.aggregator}_"
        return {f.name.removeprefix(prefix): getattr(self, f.name) for f in fields(self) if f.name.startswith(prefix)}

    @property
    def last_feature_size(self) -> tuple[int, int]:
        """(h, w) of the stride-32 feature map for `image_size` (every backbone rounds up)."""
        return (math.ceil(self.image_size[0] / 32), math.ceil(self.image_size[1] / 32))


class VPRNet(nn.Module):
    """images float32 [B, C, H, W] (normalised) -> L2-normalised descriptors float32 [B, D].

    The aggregator sees the last (stride-32) feature map; `forward_features` exposes all four levels
    so training code can pool label-specific features from the same maps.
    """

    def __init__(self, config: ModelConfig, load_pretrained_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.backbone, channels = build_backbone(
            config.backbone,
            pretrained=config.pretrained and load_pretrained_weights,
            in_channels=config.in_channels,
            frozen_stages=config.frozen_stages,
        )
        self.backbone_channels = channels
        self.aggregator, aggregated_dim = build_aggregator(
            config.aggregator, channels[-1], feature_size=config.last_feature_size, **config.aggregator_options()
        )
        self.fc: nn.Module = (
            nn.Linear(aggregated_dim, config.descriptor_dim) if config.descriptor_dim is not None else nn.Identity()
        )
        self._descriptor_dim = config.descriptor_dim if config.descriptor_dim is not None else aggregated_dim

    @property
    def descriptor_dim(self) -> int:
        """Length D of the global descriptor."""
        return self._descriptor_dim

    def forward_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The 4 backbone levels: [B, C_l, H/s, W/s] for s = 4, 8, 16, 32 (rounded up)."""
        return self.backbone(images)

    def aggregate(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Global descriptor float32 [B, D], L2-normalised, from the levels of forward_features."""
        return F.normalize(self.fc(self.aggregator(features[-1])), p=2.0, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W] -> descriptors [B, D] with unit L2 norm."""
        return self.aggregate(self.forward_features(images))


def build_model(config: ModelConfig, load_pretrained_weights: bool = True) -> VPRNet:
    """Build a VPRNet from its config. Pass load_pretrained_weights=False when a state_dict will be
    loaded right after (model files), so no ImageNet weights are read or required."""
    return VPRNet(config, load_pretrained_weights=load_pretrained_weights)
