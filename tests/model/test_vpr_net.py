"""VPRNet and ModelConfig: descriptor shapes, unit norm, feature reuse, config round trip, scripting."""

from __future__ import annotations

import json

import pytest
import torch

from structvpr.data.images import IMAGENET_MEAN
from structvpr.dataclass_dict import from_plain_dict, to_plain_dict
from structvpr.model import ModelConfig, VPRNet, build_model


@pytest.mark.parametrize(
    ("aggregator", "descriptor_dim", "expected_dim"),
    [("gem", None, 1280), ("gem", 64, 64), ("netvlad", 128, 128), ("mixvpr", None, 1024)],
)
def test_descriptors_have_the_announced_dimension_and_unit_norm(
    aggregator: str, descriptor_dim: int | None, expected_dim: int
) -> None:
    config = ModelConfig(
        aggregator=aggregator, descriptor_dim=descriptor_dim, pretrained=False, image_size=(64, 96), netvlad_clusters=8
    )
    model = build_model(config).eval()
    images = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        descriptors = model(images)
        levels = model.forward_features(images)
        assert torch.allclose(model.aggregate(levels), descriptors)
    assert model.descriptor_dim == expected_dim
    assert descriptors.shape == (3, expected_dim) and descriptors.dtype == torch.float32
    assert torch.allclose(descriptors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert [level.shape[-2:] for level in levels] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_config_round_trips_through_json_and_fills_backbone_normalisation() -> None:
    config = ModelConfig(backbone="resnet18", aggregator="netvlad", descriptor_dim=256, image_size=(480, 640))
    assert config.mean == IMAGENET_MEAN
    assert ModelConfig().mean == (0.5, 0.5, 0.5) and ModelConfig().std == (0.5, 0.5, 0.5)
    restored = from_plain_dict(ModelConfig, json.loads(json.dumps(to_plain_dict(config))))
    assert restored == config and restored.image_size == (480, 640)
    with pytest.raises(ValueError, match="unknown config key 'colour'"):
        from_plain_dict(ModelConfig, {"colour": 1})
    with pytest.raises(ValueError, match="unknown backbone"):
        ModelConfig(backbone="vit")


def test_model_is_scriptable_and_tracing_matches_eager() -> None:
    model = build_model(ModelConfig(pretrained=False, image_size=(64, 64))).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        scripted = torch.jit.script(model)
        assert torch.allclose(scripted(images), model(images), atol=1e-5)


def test_rebuilding_without_pretrained_weights_reads_none() -> None:
    # Model files rebuild the network and load their own state_dict: no ImageNet file is needed.
    config = ModelConfig(backbone="resnet18", pretrained=True, image_size=(64, 64))
    model = build_model(config, load_pretrained_weights=False)
    assert isinstance(model, VPRNet) and model.config.pretrained
