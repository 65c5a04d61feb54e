"""Label-specific features: masked pooling, absent and excluded classes, variants, shared weighting."""

from __future__ import annotations

import pytest
import torch

from structvpr.model.label_features import (
    LabelFeatureConfig,
    LabelFeatureHead,
    mask_head_loss,
    masked_pool,
)

LEVEL_CHANNELS = [8, 12, 16, 20]


pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZES = [(16, 16), (8, 8), (4, 4), (2, 2)]


def _levels(batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h, w, generator=generator) for c, (h, w) in zip(LEVEL_CHANNELS, SIZES, strict=False)]


def _one_hot(label_map: torch.Tensor, num_classes: int = 4) -> torch.Tensor:
    return torch.nn.functional.one_hot(label_map, num_classes).permute(0, 3, 1, 2).float()


def _label_map() -> torch.Tensor:
    """[2, 64, 64]: image 0 = class 0 top half, class 1 bottom-left, class 3 (dynamic) bottom-right;
    image 1 = class 0 and class 1 halves. Class 2 appears nowhere."""
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[0, 32:, :32] = 1
    labels[0, 32:, 32:] = 3
    labels[1, :, 32:] = 1
    return labels


def test_masked_pool_is_the_mean_over_the_region() -> None:
    features = torch.arange(16.0).view(1, 1, 4, 4)
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, :2] = 1.0  # top half: values 0..7, mean 3.5
    pooled = masked_pool(features, masks)
    assert pooled.shape == (1, 2, 1)
    assert pooled[0, 0, 0].item() == pytest.approx(3.5)
    assert pooled[0, 1, 0].item() == 0.0  # empty mask -> 0, not NaN


def test_absent_class_is_zero_and_excluded_class_is_left_out() -> None:
    config = LabelFeatureConfig(num_classes=4, exclude_classes=(3,), levels=(1, 2, 3), label_dim=16)
    head = LabelFeatureHead(config, LEVEL_CHANNELS).eval()
    out = head(_levels(), _one_hot(_label_map()))
    assert head.kept_classes == [0, 1, 2]
    assert out.class_features.shape == (2, 3, 3, 16)
    absent = out.class_features[:, :, 2]  # class 2 is in no image
    assert torch.count_nonzero(absent) == 0
    assert not out.class_presence[:, :, 2].any()
    assert torch.all(out.weights[:, :, 2] == 0)
    assert out.class_presence[:, :, :2].all()
    norms = out.class_features[:, :, :2].norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert out.class_areas[0, 0, 1].item() == pytest.approx(0.25)
    assert out.descriptor.shape == (2, head.descriptor_dim) == (2, 3 * 3 * 16)


def test_excluded_class_region_does_not_change_the_descriptor() -> None:
    config = LabelFeatureConfig(num_classes=4, exclude_classes=(3,), levels=(1, 2, 3), label_dim=16)
    head = LabelFeatureHead(config, LEVEL_CHANNELS).eval()
    one_hot = _one_hot(_label_map())
    levels = _levels()
    changed = [level.clone() for level in levels]
    for level in changed:  # perturb only the dynamic (class 3) quadrant of image 0
        h, w = level.shape[-2:]
        level[0, :, h // 2 :, w // 2 :] += 5.0 * torch.randn_like(level[0, :, h // 2 :, w // 2 :])
    before, after = head(levels, one_hot).descriptor, head(changed, one_hot).descriptor
    assert torch.allclose(before, after, atol=1e-6)
    kept = LabelFeatureHead(
        LabelFeatureConfig(num_classes=4, exclude_classes=(), levels=(1, 2, 3), label_dim=16), LEVEL_CHANNELS
    ).eval()
    assert not torch.allclose(kept(levels, one_hot).descriptor, kept(changed, one_hot).descriptor)


@pytest.mark.parametrize(
    "variant,units,dim", [("lc", 3, 3 * 16), ("mc", 2, 2 * 16), ("lmc", 6, 6 * 16), ("mlp", 6, 32)]
)
def test_variants_have_the_documented_shapes(variant: str, units: int, dim: int) -> None:
    config = LabelFeatureConfig(
        num_classes=4, exclude_classes=(3,), levels=(2, 3), label_dim=16, variant=variant, mlp_dim=32
    )
    head = LabelFeatureHead(config, LEVEL_CHANNELS)
    out = head(_levels(), _one_hot(_label_map()))
    assert out.units.shape == (2, units, 16)
    assert out.unit_presence.shape == out.unit_areas.shape == (2, units)
    assert out.descriptor.shape == (2, dim) and head.descriptor_dim == dim
    assert torch.allclose(out.descriptor.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_weighting_module_is_shared_and_scales_features() -> None:
    config = LabelFeatureConfig(num_classes=4, exclude_classes=(3,), levels=(1, 2, 3), label_dim=16)
    head = LabelFeatureHead(config, LEVEL_CHANNELS)
    out = head(_levels(), _one_hot(_label_map()))
    # One set of weights for every class and level: recomputing from the features reproduces them.
    recomputed = head.weighting(out.class_features) * out.class_presence
    assert torch.allclose(recomputed, out.weights)
    assert ((out.weights > 0) & (out.weights < 1) | ~out.class_presence).all()
    assert sum(p.numel() for p in head.weighting.parameters()) == 16 * 64 + 64 + 64 + 1


def test_mask_head_learns_the_masks() -> None:
    torch.manual_seed(0)
    config = LabelFeatureConfig(
        num_classes=4, exclude_classes=(3,), levels=(2, 3), label_dim=16, mask_head=True, mask_head_level=2
    )
    head = LabelFeatureHead(config, LEVEL_CHANNELS)
    levels, one_hot = _levels(), _one_hot(_label_map())
    levels[2] = levels[2] + 3.0 * torch.nn.functional.adaptive_avg_pool2d(one_hot, (4, 4)).repeat(1, 4, 1, 1)
    optimiser = torch.optim.Adam(head.mask_head.parameters(), lr=0.05)
    first = mask_head_loss(head(levels, one_hot).mask_logits, one_hot).item()
    for _ in range(40):
        optimiser.zero_grad()
        loss = mask_head_loss(head(levels, one_hot).mask_logits, one_hot)
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.3 * first
    predicted = head(levels, None)  # label features from predicted masks: no label map needed
    assert predicted.descriptor.shape == (2, head.descriptor_dim)
