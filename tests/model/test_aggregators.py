"""Aggregators: output shapes, GeM limits, NetVLAD k-means initialisation, MixVPR geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from structvpr.model.aggregators import GeM, MixVPR, NetVLAD, build_aggregator


def test_gem_p1_is_average_pooling_and_large_p_approaches_max() -> None:
    torch.manual_seed(0)
    features = torch.rand(2, 8, 5, 7) + 0.1
    assert torch.allclose(GeM(p=1.0)(features), features.mean(dim=(2, 3)), atol=1e-6)
    maxima = features.amax(dim=(2, 3))
    near_max = GeM(p=200.0, learnable=False)(features)
    assert (near_max <= maxima + 1e-6).all() and (near_max >= 0.98 * maxima).all()
    cubic = GeM(p=3.0)(features)
    assert cubic.shape == (2, 8)
    assert (cubic > features.mean(dim=(2, 3))).all() and (cubic < near_max).all()


def test_gem_p_is_learnable_only_when_asked() -> None:
    learnable = GeM(learnable=True)
    assert [p for p in learnable.parameters()] == [learnable.p]
    assert len(list(GeM(learnable=False).parameters())) == 0
    with pytest.raises(ValueError, match="p must be > 0"):
        GeM(p=0.0)


def test_netvlad_shape_norm_and_kmeans_initialisation() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)).astype(np.float32) * 5
    local = (centres[rng.integers(0, 4, 400)] + rng.normal(size=(400, 16)) * 0.1).astype(np.float32)
    netvlad = NetVLAD(in_channels=16, clusters=4)
    netvlad.init_from_descriptors(local)
    # The soft assignment of each local feature must pick its nearest k-means centroid.
    normalised = local / np.linalg.norm(local, axis=1, keepdims=True)
    nearest = np.argmin(((normalised[:, None] - netvlad.centroids.detach().numpy()[None]) ** 2).sum(-1), axis=1)
    logits = netvlad.assignment(torch.from_numpy(normalised)[:, :, None, None])[:, :, 0, 0]
    assert (logits.argmax(dim=1).numpy() == nearest).mean() > 0.99
    output = netvlad(torch.randn(3, 16, 4, 5))
    assert output.shape == (3, 64) and netvlad.output_dim == 64
    assert torch.allclose(output.norm(dim=1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="at least 4"):
        NetVLAD(16, clusters=4).init_from_descriptors(local[:3])


def test_mixvpr_output_dimension_and_fixed_spatial_size() -> None:
    mixvpr = MixVPR(in_channels=32, feature_size=(3, 4), out_channels=16, out_rows=2, depth=2)
    assert mixvpr(torch.randn(2, 32, 3, 4)).shape == (2, 32)
    with pytest.raises(RuntimeError):
        mixvpr(torch.randn(2, 32, 5, 4))  # another image size needs another MixVPR


@pytest.mark.parametrize(("name", "expected_dim"), [("gem", 40), ("netvlad", 40 * 8), ("mixvpr", 64 * 2)])
def test_build_aggregator_reports_its_output_dimension(name: str, expected_dim: int) -> None:
    options = {"gem": {}, "netvlad": {"clusters": 8}, "mixvpr": {"out_channels": 64, "out_rows": 2}}[name]
    module, dim = build_aggregator(name, 40, feature_size=(2, 3), **options)
    assert dim == expected_dim
    assert module(torch.rand(2, 40, 2, 3)).shape == (2, expected_dim)


def test_build_aggregator_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown aggregator 'avg'"):
        build_aggregator("avg", 8)
    with pytest.raises(ValueError, match="feature map size"):
        build_aggregator("mixvpr", 8)
    with pytest.raises(ValueError, match="aggregator 'gem': bad options"):
        build_aggregator("gem", 8, clusters=4)
