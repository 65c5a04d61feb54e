"""The VPR metric-learning loss on place-labelled batches (pytorch-metric-learning losses + miners)."""

from __future__ import annotations

import torch
from pytorch_metric_learning import losses, miners
from torch import nn

LOSS_NAMES = ("multi_similarity", "triplet")


class VPRLoss(nn.Module):
    """Loss on L2-normalised descriptors of a P x K batch, after in-batch pair/triplet mining.

    `multi_similarity` (default, METHOD.md Stage I): MultiSimilarityMiner(epsilon) keeps the
    informative pairs, MultiSimilarityLoss(alpha, beta, base) weighs them. `triplet`: hardest in-batch
    triplets (TripletMarginMiner "hard") with TripletMarginLoss(margin).
    """

    def __init__(
        self,
        kind: str = "multi_similarity",
        *,
        ms_alpha: float = 1.0,
        ms_beta: float = 50.0,
        ms_base: float = 0.0,
        miner_epsilon: float = 0.1,
        triplet_margin: float = 0.1,
    ) -> None:
        super().__init__()
        if kind == "multi_similarity":
            self.loss = losses.MultiSimilarityLoss(alpha=ms_alpha, beta=ms_beta, base=ms_base)
            self.miner = miners.MultiSimilarityMiner(epsilon=miner_epsilon)
        elif kind == "triplet":
            self.loss = losses.TripletMarginLoss(margin=triplet_margin)
            self.miner = miners.TripletMarginMiner(margin=triplet_margin, type_of_triplets="hard")
        else:
            raise ValueError(f"unknown VPR loss '{kind}' (choose from {', '.join(LOSS_NAMES)})")
        self.kind = kind
        self.last_mined_fraction = 0.0  # share of the batch's images that took part in a mined tuple

    def forward(self, descriptors: torch.Tensor, place_labels: torch.Tensor) -> torch.Tensor:
        """descriptors: float [B, D]; place_labels: int64 [B] (same value = same place) -> scalar loss."""
        # Mining in float32 keeps the epsilon comparisons meaningful under mixed precision.
        descriptors = descriptors.float()
        mined = self.miner(descriptors, place_labels)
        used = torch.unique(torch.cat([indices.reshape(-1) for indices in mined]))
        self.last_mined_fraction = float(used.numel()) / max(int(descriptors.shape[0]), 1)
        return self.loss(descriptors, place_labels, mined)


def build_vpr_loss(train_config) -> VPRLoss:
    """The VPR loss selected by a TrainConfig (`loss`, `ms_*`, `miner_epsilon`, `triplet_margin`)."""
    return VPRLoss(
        train_config.loss,
        ms_alpha=train_config.ms_alpha,
        ms_beta=train_config.ms_beta,
        ms_base=train_config.ms_base,
        miner_epsilon=train_config.miner_epsilon,
        triplet_margin=train_config.triplet_margin,
    )
