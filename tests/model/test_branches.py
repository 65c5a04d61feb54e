"""SegBranch (teacher) and RGBTrainingModel (student in training)."""

from __future__ import annotations

import pytest
import torch

from structvpr.model.branches import (
    RGBTrainingModel,
    SegBranch,
    SegBranchFileError,
    load_seg_branch,
    save_seg_branch,
)
from structvpr.model.label_features import LabelFeatureConfig
from structvpr.model.vpr_net import ModelConfig, build_model

LABEL_CONFIG = LabelFeatureConfig(num_classes=6, exclude_classes=(5,), levels=(2, 3), label_dim=16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_hot(batch: int = 2) -> torch.Tensor:
    labels = torch.randint(0, 6, (batch, 64, 64), generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.one_hot(labels, 6).permute(0, 3, 1, 2).float()


def _seg_config() -> ModelConfig:
    return ModelConfig(backbone="efficientnet_lite0", pretrained=False, in_channels=6, image_size=(64, 64))


def test_seg_branch_descriptor_is_normalised_concatenation(tmp_path) -> None:
    torch.manual_seed(0)
    branch = SegBranch(_seg_config(), LABEL_CONFIG).eval()
    with torch.no_grad():
        out = branch.forward_outputs(_one_hot())
    assert out.descriptor.shape == (2, branch.descriptor_dim) == (2, 1280 + 2 * 5 * 16)
    assert torch.allclose(out.descriptor.norm(dim=1), torch.ones(2), atol=1e-5)
    # label_weight = 1: both halves carry the same weight (1/sqrt 2 each).
    assert torch.allclose(out.descriptor[:, :1280] * 2**0.5, out.global_descriptor, atol=1e-5)
    save_seg_branch(branch, tmp_path / "seg.pt", {"stage": 1})
    loaded, metadata = load_seg_branch(tmp_path / "seg.pt")
    assert metadata == {"stage": 1} and loaded.label_config == LABEL_CONFIG
    with torch.no_grad():
        assert torch.allclose(loaded(_one_hot()), out.descriptor, atol=1e-6)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(SegBranchFileError, match="bad.pt"):
        load_seg_branch(tmp_path / "bad.pt")


def test_rgb_training_model_inference_is_the_plain_vprnet() -> None:
    torch.manual_seed(0)
    network = build_model(ModelConfig(backbone="efficientnet_lite0", pretrained=False, image_size=(64, 64))).eval()
    student = RGBTrainingModel(network, LABEL_CONFIG).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = student.forward_outputs(images, _one_hot())
        assert torch.equal(out.descriptor, out.global_descriptor)
        assert torch.allclose(student(images), out.global_descriptor, atol=1e-6)
    assert out.labels.units.shape == (2, 10, 16)
