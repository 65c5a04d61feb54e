"""Backbones: 4 levels at strides 4/8/16/32, first-conv adaptation, freezing, no downloads."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from structvpr.model.backbones import adapt_first_conv, build_backbone

EXPECTED_CHANNELS = {
    "efficientnet_lite0": [24, 40, 112, 1280],
    "resnet18": [64, 128, 256, 512],
    "resnet50": [256, 512, 1024, 2048],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANNELS))
def test_levels_shapes_and_strides(name: str) -> None:
    backbone, channels = build_backbone(name, pretrained=False)
    assert channels == EXPECTED_CHANNELS[name]
    backbone.eval()
    with torch.no_grad():
        levels = backbone(torch.randn(2, 3, 64, 96))
    assert len(levels) == 4
    for level, stride, level_channels in zip(levels, (4, 8, 16, 32), channels, strict=False):
        assert level.shape == (2, level_channels, math.ceil(64 / stride), math.ceil(96 / stride))


def test_pretrained_efficientnet_backbone_equals_the_classifier_features() -> None:
    from structvpr.model.efficientnet_lite import efficientnet_lite0_imagenet

    backbone, _ = build_backbone("efficientnet_lite0", pretrained=True)
    reference = efficientnet_lite0_imagenet()
    backbone.eval()
    reference.eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(backbone(images), reference.forward_levels(images), strict=False):
            assert torch.equal(ours, theirs)


def test_resnet_pretrained_without_cache_names_the_file_and_the_way_out(tmp_path: Path) -> None:
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))  # an empty cache: the weights cannot be there
    try:
        with pytest.raises(RuntimeError, match=r"resnet18-.*\.pth.*--no-pretrained"):
            build_backbone("resnet18", pretrained=True)
    finally:
        torch.hub.set_dir(previous)


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'"):
        build_backbone("vgg16", pretrained=False)


def test_k_channel_one_hot_input_looks_like_a_grey_image_with_one_shade_per_class() -> None:
    backbone_rgb, _ = build_backbone("efficientnet_lite0", pretrained=True)
    backbone_k, channels = build_backbone("efficientnet_lite0", pretrained=True, in_channels=5)
    assert channels[-1] == 1280
    stem_rgb = backbone_rgb.stages[0].stem[0]
    stem_k = backbone_k.stages[0].stem[0]
    assert stem_k.weight.shape == (32, 5, 3, 3)
    shades = torch.linspace(-1, 1, 5)
    responses = []
    with torch.no_grad():
        for k in (0, 3):
            one_hot = torch.zeros(1, 5, 16, 16)
            one_hot[:, k] = 1.0
            grey = torch.full((1, 3, 16, 16), float(shades[k]))
            assert torch.allclose(stem_k(one_hot), stem_rgb(grey), atol=1e-5)
            responses.append(stem_k(one_hot))
    assert not torch.allclose(responses[0], responses[1])  # classes are distinguishable from the start
    levels = backbone_k(torch.zeros(1, 5, 64, 64))
    assert [level.shape[1] for level in levels] == channels


def test_adapt_first_conv_keeps_geometry_for_plain_conv() -> None:
    conv = torch.nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False)
    adapted = adapt_first_conv(conv, 2)
    assert adapted.weight.shape == (8, 2, 7, 7)
    assert adapted(torch.zeros(1, 2, 32, 32)).shape == conv(torch.zeros(1, 3, 32, 32)).shape
    assert torch.allclose(adapted.weight[:, 1], conv.weight.sum(dim=1))


def test_frozen_stages_get_no_gradient_and_keep_batchnorm_statistics() -> None:
    backbone, _ = build_backbone("resnet18", pretrained=False, frozen_stages=2)
    backbone.train()
    frozen_bn = backbone.stages[0][1]
    assert not frozen_bn.training and backbone.stages[3].training
    running_mean = frozen_bn.running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64))[-1].sum().backward()
    assert torch.equal(frozen_bn.running_mean, running_mean)
    assert all(p.grad is None for p in backbone.stages[1].parameters())
    assert all(p.grad is not None for p in backbone.stages[2].parameters())
    with pytest.raises(ValueError, match="0..4"):
        backbone.freeze_stages(5)
