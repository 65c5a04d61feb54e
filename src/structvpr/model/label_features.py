"""Label-specific features: per-class masked pooling of backbone feature maps (StructVPR++).

For every kept class k and every chosen level l, the level-l feature map is projected to a common
`label_dim` (1x1 conv, so one shared weighting module can score features of every level), pooled with
the area-fraction mask A_l[k] and L2-normalised. A class absent from an image (area below
`min_area`) gets a zero feature and presence 0. A shared weighting module (one small MLP, the same
weights for every label feature) gives each feature a scalar weight in (0, 1) that scales it.

Variants (how the weighted features become the label descriptor):
- ``lc``  : concatenate the K weighted class features of the last chosen level          [K*d]
- ``mc``  : concatenate over levels one class-agnostic feature (union of kept masks)    [L*d]
- ``lmc`` : concatenate over levels and classes (default)                              [L*K*d]
- ``mlp`` : one MLP over the lmc concatenation                                         [mlp_dim]

The "units" of a variant are the features it is built from (lc: K, mc: L, lmc and mlp: L*K); they are
what Stage II distils and aligns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("mlp", "lc", "mc", "lmc")


@dataclass
class LabelFeatureConfig:
    """Options of the label-feature head (all have the METHOD.md defaults).

    num_classes: K of the merge table (structural-6 -> 6). exclude_classes: merged ids left out of the
    label features (the dynamic groups by default; pass () to keep them). levels: backbone levels used
    (0..3 = strides 4, 8, 16, 32). min_area: area fraction under which a class counts as absent.
    """

    num_classes: int = 6
    exclude_classes: tuple[int, ...] = (5,)
    variant: str = "lmc"
    levels: tuple[int, ...] = (1, 2, 3)
    label_dim: int = 128
    pooling: str = "avg"  # "avg" or "gem"
    gem_p: float = 3.0
    weighting_hidden: int = 64
    mlp_dim: int = 256
    min_area: float = 0.005
    mask_head: bool = False  # beyond the paper: predict A from RGB features
    mask_head_level: int = 2

    def __post_init__(self) -> None:
        self.exclude_classes = tuple(int(k) for k in self.exclude_classes)
        self.levels = tuple(int(level) for level in self.levels)
        if self.variant not in VARIANTS:
            raise ValueError(f"label feature variant {self.variant!r} is not one of {VARIANTS}")
        if self.pooling not in ("avg", "gem"):
            raise ValueError(f"label feature pooling {self.pooling!r} is not 'avg' or 'gem'")
        if not self.levels or any(level not in (0, 1, 2, 3) for level in self.levels):
            raise ValueError(f"label feature levels {self.levels} must be a non-empty subset of 0..3")
        if any(not 0 <= k < self.num_classes for k in self.exclude_classes):
            raise ValueError(f"exclude_classes {self.exclude_classes} outside 0..{self.num_classes - 1}")
        if not self.kept_classes:
            raise ValueError("every class is excluded: no label features can be computed")

    @property
    def kept_classes(self) -> list[int]:
        """Merged class ids that get label features, ascending."""
        return [k for k in range(self.num_classes) if k not in self.exclude_classes]


@dataclass
class LabelFeatureOutput:
    """What the head computes for a batch of B images (L levels, K kept classes, d = label_dim).

    class_features: float [B, L, K, d], L2-normalised, exactly 0 where the class is absent.
    class_presence: bool [B, L, K]. class_areas: float [B, L, K] area fractions in [0, 1].
    weights: float [B, L, K] shared-module weights in (0, 1), 0 where absent.
    units / unit_presence / unit_areas: the variant's distillation units [B, U, d], [B, U], [B, U].
    descriptor: float [B, D_label], L2-normalised (all-zero rows stay zero: nothing present).
    """

    class_features: torch.Tensor
    class_presence: torch.Tensor
    class_areas: torch.Tensor
    weights: torch.Tensor
    units: torch.Tensor
    unit_presence: torch.Tensor
    unit_areas: torch.Tensor
    descriptor: torch.Tensor
    mask_logits: torch.Tensor | None = field(default=None)


def pool_level_masks(class_masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Area-fraction masks A_l: float [B, K, H, W] one-hot (or fractions) -> [B, K, h, w].

    Adaptive average pooling, so each entry is the fraction of the cell covered by the class.
    """
    if tuple(class_masks.shape[-2:]) == tuple(size):
        return class_masks
    return F.adaptive_avg_pool2d(class_masks, (size[0], size[1]))


def masked_pool(
    features: torch.Tensor, masks: torch.Tensor, pooling: str = "avg", gem_p: float = 3.0, eps: float = 1e-6
) -> torch.Tensor:
    """Masked average (or GeM) pooling: features [B, C, h, w], masks [B, K, h, w] -> [B, K, C].

    Each class's feature is the mask-weighted mean of the feature map; an all-zero mask gives 0.
    """
    mask_sum = masks.flatten(2).sum(-1, keepdim=True)  # [B, K, 1]
    if pooling == "gem":
        features = features.clamp(min=eps).pow(gem_p)
    pooled = torch.einsum("bkhw,bchw->bkc", masks, features) / mask_sum.clamp(min=eps)
    if pooling == "gem":
        pooled = pooled.clamp(min=eps).pow(1.0 / gem_p) * (mask_sum > eps)
    return pooled


class SharedWeighting(nn.Module):
    """One small MLP applied to every label feature: [..., d] -> weight [...] in (0, 1)."""

    def __init__(self, label_dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(label_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(features)).squeeze(-1)


class MaskHead(nn.Module):
    """Beyond the paper: predict the merged-class masks from one RGB feature level.

    features [B, C, h, w] -> logits [B, K, h, w]; softmax gives area fractions usable as A.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, num_classes, 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def mask_head_loss(mask_logits: torch.Tensor, class_masks: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy between predicted masks [B, K, h, w] and true masks [B, K, H, W].

    Cells with no labelled pixels (all-ignore) do not count.
    """
    target = pool_level_masks(class_masks, mask_logits.shape[-2:])
    labelled = target.sum(1)  # [B, h, w], 0 where the label map was ignore
    target = target / labelled.unsqueeze(1).clamp(min=1e-6)
    per_cell = -(target * F.log_softmax(mask_logits, dim=1)).sum(1)
    valid = (labelled > 0.5).float()
    return (per_cell * valid).sum() / valid.sum().clamp(min=1.0)


class LabelFeatureHead(nn.Module):
    """Label-specific features from a backbone's feature levels and class masks.

    `level_channels` are the channels of the backbone's 4 levels (from build_backbone).
    """

    def __init__(self, config: LabelFeatureConfig, level_channels: Sequence[int]) -> None:
        super().__init__()
        self.config = config
        self.kept_classes = config.kept_classes
        self.projections = nn.ModuleList(
            nn.Conv2d(int(level_channels[level]), config.label_dim, 1) for level in config.levels
        )
        self.weighting = SharedWeighting(config.label_dim, config.weighting_hidden)
        num_levels, num_kept = len(config.levels), len(self.kept_classes)
        self.mlp = None
        if config.variant == "mlp":
            self.mlp = nn.Sequential(
                nn.Linear(num_levels * num_kept * config.label_dim, config.mlp_dim),
                nn.ReLU(inplace=True),
                nn.Linear(config.mlp_dim, config.mlp_dim),
            )
        self.mask_head = (
            MaskHead(int(level_channels[config.mask_head_level]), config.num_classes) if config.mask_head else None
        )

    @property
    def descriptor_dim(self) -> int:
        """Length of the label descriptor of the configured variant."""
        c, levels, kept = self.config, len(self.config.levels), len(self.kept_classes)
        return {
            "lc": kept * c.label_dim,
            "mc": levels * c.label_dim,
            "lmc": levels * kept * c.label_dim,
            "mlp": c.mlp_dim,
        }[c.variant]

    def predict_masks(self, level_features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Softmax masks [B, K, h, w] from the mask head (requires config.mask_head)."""
        if self.mask_head is None:
            raise RuntimeError("predict_masks needs LabelFeatureConfig(mask_head=True)")
        return torch.softmax(self.mask_head(level_features[self.config.mask_head_level]), dim=1)

    def forward(self, level_features: Sequence[torch.Tensor], class_masks: torch.Tensor | None) -> LabelFeatureOutput:
        """level_features: the 4 backbone levels [B, C_l, h_l, w_l]; class_masks: float [B, K, H, W]
        one-hot SLME (0 at ignore) at any resolution, or None to use the mask head's prediction.
        """
        mask_logits = None
        if self.mask_head is not None:
            mask_logits = self.mask_head(level_features[self.config.mask_head_level])
        if class_masks is None:
            if mask_logits is None:
                raise ValueError("class_masks is None and the head has no mask head")
            class_masks = torch.softmax(mask_logits, dim=1)
        kept = class_masks[:, self.kept_classes].float()
        features, presences, areas = [], [], []
        agnostic_features, agnostic_presence, agnostic_areas = [], [], []
        for projection, level in zip(self.projections, self.config.levels, strict=False):
            level_map = projection(level_features[level])
            masks = pool_level_masks(kept, level_map.shape[-2:])  # A_l: [B, K, h, w]
            area = masks.flatten(2).mean(-1)  # [B, K]
            present = area > self.config.min_area
            pooled = F.normalize(masked_pool(level_map, masks, self.config.pooling, self.config.gem_p), dim=-1)
            features.append(pooled * present.unsqueeze(-1))  # absent class -> exactly 0
            presences.append(present)
            areas.append(area)
            if self.config.variant == "mc":
                union = masks.sum(1, keepdim=True)
                union_area = union.flatten(1).mean(-1)
                union_present = union_area > self.config.min_area
                pooled_union = F.normalize(
                    masked_pool(level_map, union, self.config.pooling, self.config.gem_p)[:, 0], dim=-1
                )
                agnostic_features.append(pooled_union * union_present.unsqueeze(-1))
                agnostic_presence.append(union_present)
                agnostic_areas.append(union_area)
        class_features = torch.stack(features, 1)  # [B, L, K, d]
        class_presence = torch.stack(presences, 1)
        class_areas = torch.stack(areas, 1)
        weights = self.weighting(class_features) * class_presence
        batch = class_features.shape[0]
        variant = self.config.variant
        if variant == "mc":
            units = torch.stack(agnostic_features, 1)  # [B, L, d]
            unit_presence = torch.stack(agnostic_presence, 1)
            unit_areas = torch.stack(agnostic_areas, 1)
            unit_weights = self.weighting(units) * unit_presence
        elif variant == "lc":
            units, unit_presence = class_features[:, -1], class_presence[:, -1]
            unit_areas, unit_weights = class_areas[:, -1], weights[:, -1]
        else:  # lmc and mlp use every (level, class) feature
            units = class_features.flatten(1, 2)
            unit_presence, unit_areas = class_presence.flatten(1), class_areas.flatten(1)
            unit_weights = weights.flatten(1)
        weighted = (units * unit_weights.unsqueeze(-1)).reshape(batch, -1)
        descriptor = self.mlp(weighted) if self.mlp is not None else weighted
        return LabelFeatureOutput(
            class_features=class_features,
            class_presence=class_presence,
            class_areas=class_areas,
            weights=weights,
            units=units,
            unit_presence=unit_presence,
            unit_areas=unit_areas,
            descriptor=F.normalize(descriptor, dim=-1),
            mask_logits=mask_logits,
        )
