"""Aggregators: pool the last feature map [B, C, h, w] into one global vector [B, D].

GeM (default), NetVLAD and a MixVPR-style feature mixer. Each returns an unnormalised vector; VPRNet
applies the optional FC and the final L2 normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class GeM(nn.Module):
    """Generalised mean pooling (Radenovic et al. 2018): (mean x^p)^(1/p) per channel; [B, C, h, w] -> [B, C].

    p = 1 is average pooling, p -> inf max pooling. `learnable` makes p a trained parameter.
    """

    def __init__(self, p: float = 3.0, learnable: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM p must be > 0, got {p}")
        p_tensor = torch.full((1,), float(p))
        if learnable:
            self.p = nn.Parameter(p_tensor)
        else:
            self.register_buffer("p", p_tensor)
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1))
        return pooled.pow(1.0 / self.p)


class NetVLAD(nn.Module):
    """NetVLAD (Arandjelovic et al. 2016): soft-assigned residuals to K centroids; [B, C, h, w] -> [B, K*C].

    Local features are L2-normalised first; residuals are intra-normalised per cluster and the whole
    vector L2-normalised. `init_from_descriptors` sets centroids and assignment from k-means.
    """

    def __init__(self, in_channels: int, clusters: int = 64, alpha: float = 100.0) -> None:
        super().__init__()
        self.clusters = clusters
        self.in_channels = in_channels
        self.alpha = alpha
        self.assignment = nn.Conv2d(in_channels, clusters, kernel_size=1, bias=True)
        self.centroids = nn.Parameter(torch.rand(clusters, in_channels))

    @property
    def output_dim(self) -> int:
        """Length of the output vector: clusters * channels."""
        return self.clusters * self.in_channels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = F.normalize(features, dim=1)
        soft_assign = F.softmax(self.assignment(features).flatten(2), dim=1)  # [B, K, N]
        local = features.flatten(2)  # [B, C, N]
        # sum_n a_kn (x_n - c_k) = sum_n a_kn x_n - c_k sum_n a_kn
        vlad = torch.bmm(soft_assign, local.transpose(1, 2))
        vlad = vlad - soft_assign.sum(dim=2, keepdim=True) * self.centroids.unsqueeze(0)
        vlad = F.normalize(vlad, dim=2)
        return F.normalize(vlad.flatten(1), dim=1)

    @torch.no_grad()
    def init_from_descriptors(self, local_descriptors: np.ndarray, seed: int = 0) -> None:
        """Initialise from local features float32 [N, C] (N >= clusters) with FAISS k-means.

        As in the original NetVLAD: the assignment conv is 2*alpha*c_k . x - alpha*|c_k|^2, with alpha
        chosen so the nearest centroid gets ~100x the weight of the second nearest on average.
        """
        import faiss

        descriptors = np.ascontiguousarray(local_descriptors, dtype=np.float32)
        if descriptors.ndim != 2 or descriptors.shape[1] != self.in_channels:
            raise ValueError(f"local descriptors must be [N, {self.in_channels}], got {descriptors.shape}")
        if len(descriptors) < self.clusters:
            raise ValueError(f"need at least {self.clusters} local descriptors, got {len(descriptors)}")
        descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True).clip(min=1e-12)
        kmeans = faiss.Kmeans(self.in_channels, self.clusters, niter=100, seed=seed, verbose=False)
        kmeans.train(descriptors)
        centroids = kmeans.centroids
        assert centroids is not None  # set by train()
        index = faiss.IndexFlatL2(self.in_channels)
        index.add(centroids)
        squared_distances, _ = index.search(descriptors, 2)
        gap = float(np.mean(squared_distances[:, 1] - squared_distances[:, 0]))
        self.alpha = float(-np.log(0.01) / max(gap, 1e-12))
        centroids_t = torch.from_numpy(centroids).to(self.centroids)
        self.centroids.copy_(centroids_t)
        self.assignment.weight.copy_((2.0 * self.alpha * centroids_t)[:, :, None, None])
        assert self.assignment.bias is not None  # built with bias=True
        self.assignment.bias.copy_(-self.alpha * centroids_t.norm(dim=1) ** 2)


class FeatureMixerLayer(nn.Module):
    """One MixVPR mixer: x + MLP(LayerNorm(x)) over the flattened spatial positions."""

    def __init__(self, num_positions: int, mlp_ratio: int = 1) -> None:
        super().__init__()
        self.mix = nn.Sequential(
            nn.LayerNorm(num_positions),
            nn.Linear(num_positions, num_positions * mlp_ratio),
            nn.ReLU(),
            nn.Linear(num_positions * mlp_ratio, num_positions),
        )
        for module in self.mix.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(x)


class MixVPR(nn.Module):
    """MixVPR-style aggregation (Ali-bey et al. 2023); [B, C, h, w] -> [B, out_channels * out_rows].

    Mixes each channel's flattened h*w map with `depth` MLP layers, then projects channels and rows.
    The spatial size (h, w) is fixed at construction: the model's image size decides it.
    """

    def __init__(
        self,
        in_channels: int,
        feature_size: Sequence[int],
        out_channels: int = 256,
        out_rows: int = 4,
        depth: int = 4,
        mlp_ratio: int = 1,
    ) -> None:
        super().__init__()
        self.feature_size = (int(feature_size[0]), int(feature_size[1]))
        num_positions = self.feature_size[0] * self.feature_size[1]
        self.mixer = nn.Sequential(*[FeatureMixerLayer(num_positions, mlp_ratio) for _ in range(depth)])
        self.channel_proj = nn.Linear(in_channels, out_channels)
        self.row_proj = nn.Linear(num_positions, out_rows)
        self.output_dim = out_channels * out_rows

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.mixer(features.flatten(2))  # [B, C, h*w]
        x = self.channel_proj(x.transpose(1, 2))  # [B, h*w, out_channels]
        x = self.row_proj(x.transpose(1, 2))  # [B, out_channels, out_rows]
        return x.flatten(1)


def _mixvpr(in_channels: int, feature_size: Sequence[int] | None, **options: Any) -> tuple[nn.Module, int]:
    if feature_size is None:
        raise ValueError("the mixvpr aggregator needs the feature map size (h, w) of the last level")
    mixvpr = MixVPR(in_channels, feature_size, **options)
    return mixvpr, mixvpr.output_dim


def _netvlad(in_channels: int, feature_size: Sequence[int] | None, **options: Any) -> tuple[nn.Module, int]:
    netvlad = NetVLAD(in_channels, **options)
    return netvlad, netvlad.output_dim


# name -> builder(in_channels, feature_size, **options) -> (module, output dimension D). A new
# aggregator is its class, one line here, and its options as `<name>_<option>` fields of ModelConfig.
_BUILDERS: dict[str, Callable[..., tuple[nn.Module, int]]] = {
    "gem": lambda in_channels, feature_size, **options: (GeM(**options), in_channels),
    "netvlad": _netvlad,
    "mixvpr": _mixvpr,
}
AGGREGATOR_NAMES = tuple(_BUILDERS)


def build_aggregator(
    name: str, in_channels: int, *, feature_size: Sequence[int] | None = None, **options: Any
) -> tuple[nn.Module, int]:
    """Build an aggregator by name for a last feature map with `in_channels` channels.

    Returns (module mapping [B, C, h, w] -> [B, D], D). `feature_size` (h, w) is needed by mixvpr.
    options: the aggregator's own keyword arguments, the ModelConfig fields `<name>_<option>` without
    the prefix (gem: p, learnable; netvlad: clusters; mixvpr: out_channels, out_rows, depth,
    mlp_ratio); those not given take the class defaults.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown aggregator {name!r}; choose one of {', '.join(AGGREGATOR_NAMES)}")
    try:
        return _BUILDERS[name](in_channels, feature_size, **options)
    except TypeError as error:
        raise ValueError(f"aggregator {name!r}: bad options {sorted(options)} ({error})") from None
