"""ESPNetv2 semantic segmentation network (Mehta et al., CVPR 2019), Cityscapes configuration.

Written for structvpr from the published architecture; attribute names follow the upstream
sacmehta/EdgeNets modules so that its MIT-licensed Cityscapes weights load with `strict=True`.
Only inference matters here: no weight initialisation or training helpers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Encoder channels per level (level1..level4) for each published width s.
ENCODER_CHANNELS: dict[float, tuple[int, int, int, int]] = {
    0.5: (16, 32, 64, 128),
    1.0: (32, 64, 128, 256),
    1.5: (32, 96, 192, 384),
    2.0: (32, 128, 256, 512),
}
BRANCHES = 4  # parallel dilated branches in every EESP unit
RECEPTIVE_LIMITS = (13, 11, 9, 7, 5)  # largest effective 3x3 kernel allowed per spatial level
EESP_REPEATS_LEVEL3, EESP_REPEATS_LEVEL4 = 3, 7
REINFORCEMENT_CHANNELS = 3  # the input image re-injected at every down-sampling
PYRAMID_SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)
PYRAMID_MIN_SIDE = 5


class ConvBNAct(nn.Module):
    """conv -> BN (-> PReLU); keys `conv`, `bn`, `act` as in the encoder's weights."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, activation: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        if activation:
            self.act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.act(x) if hasattr(self, "act") else x


class BNAct(nn.Module):
    """BN -> PReLU with keys `bn`, `act`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class DilatedDepthwise(nn.Module):
    """Depth-wise dilated 3x3 conv (key `conv`)."""

    def __init__(self, channels: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            channels, channels, 3, stride, padding=dilation, dilation=dilation, groups=channels, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SeqConvBNAct(nn.Module):
    """conv -> BN -> PReLU stored as `cbr.0/1/2` (the decoder's key layout)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, groups: int = 1) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel, 1, padding=(kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.PReLU(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr(x)


class SeqBNAct(nn.Module):
    """BN -> PReLU stored as `br.0/1`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.br = nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.br(x)


class ChannelShuffle(nn.Module):
    """Interleave `groups` channel groups so the following grouped conv mixes all scales."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def _dilations(receptive_limit: int) -> list[int]:
    """Dilation per branch: kernels 3, 5, 7, 9 (effective) capped at the limit, sorted ascending."""
    kernel_sizes = sorted(k if k <= receptive_limit else 3 for k in (3 + 2 * i for i in range(BRANCHES)))
    return [(k - 1) // 2 for k in kernel_sizes]


class EESP(nn.Module):
    """Extremely Efficient Spatial Pyramid unit: reduce, split into dilated branches, fuse, expand."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, receptive_limit: int) -> None:
        super().__init__()
        branch_ch = out_ch // BRANCHES
        self.stride = stride
        self.proj_1x1 = ConvBNAct(in_ch, branch_ch, 1, groups=BRANCHES)
        self.spp_dw = nn.ModuleList(DilatedDepthwise(branch_ch, stride, d) for d in _dilations(receptive_limit))
        self.conv_1x1_exp = ConvBNAct(out_ch, out_ch, 1, groups=BRANCHES, activation=False)
        self.br_after_cat = BNAct(out_ch)
        self.module_act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.proj_1x1(x)
        branches = [self.spp_dw[0](reduced)]
        for conv in self.spp_dw[1:]:
            # hierarchical feature fusion: each branch adds the previous one (removes gridding)
            branches.append(conv(reduced) + branches[-1])
        expanded = self.conv_1x1_exp(self.br_after_cat(torch.cat(branches, 1)))
        if self.stride == 2:
            return expanded  # the down-sampler fuses and activates
        if expanded.shape == x.shape:
            expanded = expanded + x
        return self.module_act(expanded)


class DownSampler(nn.Module):
    """Strided level start: [avg-pool ; strided EESP] + projection of the down-sampled input image."""

    def __init__(self, in_ch: int, out_ch: int, receptive_limit: int) -> None:
        super().__init__()
        self.eesp = EESP(in_ch, out_ch - in_ch, stride=2, receptive_limit=receptive_limit)
        self.avg = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        self.inp_reinf = nn.Sequential(
            ConvBNAct(REINFORCEMENT_CHANNELS, REINFORCEMENT_CHANNELS, 3),
            ConvBNAct(REINFORCEMENT_CHANNELS, out_ch, 1, activation=False),
        )
        self.act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        pooled = self.avg(x)
        out = torch.cat([pooled, self.eesp(x)], 1)
        # halve the RGB image until its height matches (the upstream rule; it compares heights)
        while image.shape[2] != pooled.shape[2]:
            image = F.avg_pool2d(image, kernel_size=3, stride=2, padding=1)
        return self.act(out + self.inp_reinf(image))


class EESPNetEncoder(nn.Module):
    """Levels 1-4 of the EESPNet backbone (strides 2, 4, 8, 16)."""

    def __init__(self, width: float) -> None:
        super().__init__()
        ch = ENCODER_CHANNELS[width]
        self.level1 = ConvBNAct(3, ch[0], 3, stride=2)
        self.level2_0 = DownSampler(ch[0], ch[1], RECEPTIVE_LIMITS[0])
        self.level3_0 = DownSampler(ch[1], ch[2], RECEPTIVE_LIMITS[1])
        self.level3 = nn.ModuleList(EESP(ch[2], ch[2], 1, RECEPTIVE_LIMITS[2]) for _ in range(EESP_REPEATS_LEVEL3))
        self.level4_0 = DownSampler(ch[2], ch[3], RECEPTIVE_LIMITS[2])
        self.level4 = nn.ModuleList(EESP(ch[3], ch[3], 1, RECEPTIVE_LIMITS[3]) for _ in range(EESP_REPEATS_LEVEL4))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image [B, 3, H, W] -> feature maps of levels 1..4."""
        out1 = self.level1(image)
        out2 = self.level2_0(out1, image)
        out3 = self.level3_0(out2, image)
        for unit in self.level3:
            out3 = unit(out3)
        out4 = self.level4_0(out3, image)
        for unit in self.level4:
            out4 = unit(out4)
        return [out1, out2, out3, out4]


class EfficientPyramidPool(nn.Module):
    """Project, depth-wise conv at several scales, shuffle, grouped 3x3 merge, 1x1 to `out_ch`."""

    def __init__(self, in_ch: int, proj_ch: int, out_ch: int, last: bool = False) -> None:
        super().__init__()
        n = len(PYRAMID_SCALES)
        self.projection_layer = SeqConvBNAct(in_ch, proj_ch, 1)
        self.stages = nn.ModuleList(
            nn.Conv2d(proj_ch, proj_ch, 3, padding=1, groups=proj_ch, bias=False) for _ in PYRAMID_SCALES
        )
        self.merge_layer = nn.Sequential(
            SeqBNAct(proj_ch * n),
            ChannelShuffle(n),
            SeqConvBNAct(proj_ch * n, proj_ch, 3, groups=proj_ch),
            nn.Conv2d(proj_ch, out_ch, 1, bias=last),
        )
        self.last = last
        if not last:
            self.br = SeqBNAct(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection_layer(x)
        height, width = x.shape[2:]
        pyramid = []
        for scale, conv in zip(PYRAMID_SCALES, self.stages, strict=False):
            size = (max(math.ceil(height * scale), PYRAMID_MIN_SIDE), max(math.ceil(width * scale), PYRAMID_MIN_SIDE))
            if scale < 1.0:
                level = conv(F.adaptive_avg_pool2d(x, size))
                level = F.interpolate(level, (height, width), mode="bilinear", align_corners=True)
            elif scale > 1.0:
                level = conv(F.interpolate(x, size, mode="bilinear", align_corners=True))
                level = F.adaptive_avg_pool2d(level, (height, width))
            else:
                level = conv(x)
            pyramid.append(level)
        out = self.merge_layer(torch.cat(pyramid, 1))
        return out if self.last else self.br(out)


class GatedSkip(nn.Module):
    """Encoder skip projected by a grouped 3x3 conv, gated per channel by a global sigmoid weight."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.wt_layer = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.Sigmoid())
        self.expansion_layer = SeqConvBNAct(in_ch, out_ch, 3, groups=math.gcd(in_ch, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expansion_layer(x) * self.wt_layer(x)


class ESPNetv2Segmentation(nn.Module):
    """ESPNetv2 encoder + bottom-up pyramid-pooling decoder; logits at the input resolution."""

    def __init__(self, width: float = 2.0, num_classes: int = 20) -> None:
        super().__init__()
        if width not in ENCODER_CHANNELS:
            raise ValueError(f"ESPNetv2 width s={width} is not supported; choose from {sorted(ENCODER_CHANNELS)}")
        ch = ENCODER_CHANNELS[width]
        dec = (64, 48, 32, num_classes)
        proj = min(num_classes // 2, 16)
        self.base_net = EESPNetEncoder(width)
        self.bu_dec_l1 = EfficientPyramidPool(ch[3], proj, dec[0])
        self.bu_dec_l2 = EfficientPyramidPool(dec[0], proj, dec[1])
        self.bu_dec_l3 = EfficientPyramidPool(dec[1], proj, dec[2])
        self.bu_dec_l4 = EfficientPyramidPool(dec[2], proj, dec[3], last=True)
        self.merge_enc_dec_l2 = GatedSkip(ch[2], dec[0])
        self.merge_enc_dec_l3 = GatedSkip(ch[1], dec[1])
        self.merge_enc_dec_l4 = GatedSkip(ch[0], dec[2])
        self.bu_br_l2 = nn.Sequential(nn.BatchNorm2d(dec[0]), nn.PReLU(dec[0]))
        self.bu_br_l3 = nn.Sequential(nn.BatchNorm2d(dec[1]), nn.PReLU(dec[1]))
        self.bu_br_l4 = nn.Sequential(nn.BatchNorm2d(dec[2]), nn.PReLU(dec[2]))

    @staticmethod
    def _up2(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: float32 [B, 3, H, W] normalised RGB -> logits float32 [B, num_classes, H, W]."""
        out1, out2, out3, out4 = self.base_net(image)
        x = self.bu_dec_l1(out4)
        x = self.bu_dec_l2(self.bu_br_l2(self._up2(x) + self.merge_enc_dec_l2(out3)))
        x = self.bu_dec_l3(self.bu_br_l3(self._up2(x) + self.merge_enc_dec_l3(out2)))
        x = self.bu_dec_l4(self.bu_br_l4(self._up2(x) + self.merge_enc_dec_l4(out1)))
        return F.interpolate(x, size=image.shape[2:], mode="bilinear", align_corners=True)
