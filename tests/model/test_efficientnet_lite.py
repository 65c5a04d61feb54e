"""EfficientNet-Lite0: strict loading of the shipped ImageNet weights and TF 'SAME' geometry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from structvpr.model.efficientnet_lite import (
    Conv2dSame,
    EfficientNetLite0,
    efficientnet_lite0_imagenet,
    pretrained_weights_path,
)


def test_shipped_weights_load_strictly_with_every_key_and_shape() -> None:
    checkpoint = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    model = efficientnet_lite0_imagenet()  # load_state_dict(strict=True) inside
    state = model.state_dict()
    assert set(state) == set(checkpoint)
    assert all(state[key].shape == checkpoint[key].shape for key in checkpoint)
    assert torch.equal(state["_blocks.15._project_conv.weight"], checkpoint["_blocks.15._project_conv.weight"])


def test_imagenet_classifier_gives_a_confident_distribution() -> None:
    # A real trained network gives peaked softmax outputs; a mis-wired one (wrong padding order,
    # missing activations) gives near-uniform or NaN outputs on the same input.
    model = efficientnet_lite0_imagenet().eval()
    torch.manual_seed(0)
    images = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        probabilities = model(images).softmax(dim=1)
    assert probabilities.shape == (2, 1000)
    assert torch.isfinite(probabilities).all()
    assert probabilities.max(dim=1).values.min() > 10 / 1000


@pytest.mark.parametrize("size", [(64, 96), (65, 97)])
def test_levels_have_strides_4_8_16_32_rounded_up(size: tuple[int, int]) -> None:
    model = EfficientNetLite0(num_classes=None).eval()
    with torch.no_grad():
        levels = model.forward_levels(torch.zeros(1, 3, *size))
    for level, stride, channels in zip(levels, (4, 8, 16, 32), (24, 40, 112, 1280), strict=False):
        assert level.shape == (1, channels, math.ceil(size[0] / stride), math.ceil(size[1] / stride))


def test_same_padding_matches_tensorflow_on_even_and_odd_sizes() -> None:
    conv = Conv2dSame(1, 1, kernel_size=3, stride=2)
    torch.manual_seed(0)
    for size, (before, after) in ((8, (0, 1)), (9, (1, 1))):
        x = torch.randn(1, 1, size, size)
        # TF pads the extra row/column at the bottom/right.
        expected = F.conv2d(F.pad(x, [before, after, before, after]), conv.weight, stride=2)
        assert torch.allclose(conv(x), expected, atol=1e-6)
        assert conv(x).shape[-1] == math.ceil(size / 2)


def test_model_without_classifier_refuses_classification() -> None:
    with pytest.raises(RuntimeError, match="without a classifier"):
        EfficientNetLite0(num_classes=None)(torch.zeros(1, 3, 32, 32))
