"""Stage II losses: sample-weighted distillation from the frozen seg-branch and semantic alignment.

D(s, t) = 1 - cos(P s, t), with P a learned linear projection when the student's dimension differs
from the teacher's (identity otherwise). Per-sample weights w_i come from the offline partition;
a sample with w_i = 0 (group G4) contributes exactly zero loss and zero gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_NORMALIZATIONS = ("batch", "weight_sum")


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cos along the last dimension: [..., D] x [..., D] -> [...] in [0, 2]."""
    return 1.0 - F.cosine_similarity(student, teacher, dim=-1, eps=1e-8)


def _weighted_mean(per_sample: torch.Tensor, weights: torch.Tensor, normalization: str) -> torch.Tensor:
    """sum_i w_i x_i divided by the batch size (as in the paper's sum) or by sum_i w_i."""
    if normalization not in WEIGHT_NORMALIZATIONS:
        raise ValueError(f"weight normalization {normalization!r} is not one of {WEIGHT_NORMALIZATIONS}")
    weights = weights.to(per_sample.dtype)
    total = (weights * per_sample).sum()
    if normalization == "batch":
        return total / max(per_sample.shape[0], 1)
    return total / weights.sum().clamp(min=1e-8)


class Projection(nn.Module):
    """Linear map student_dim -> teacher_dim, or identity (no parameters) when they are equal and
    `always` is False. `always=True` learns the map even for equal widths: two separately trained
    networks need not have matching channels."""

    def __init__(self, student_dim: int, teacher_dim: int, always: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(student_dim, teacher_dim, bias=False) if always or student_dim != teacher_dim else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features if self.linear is None else self.linear(features)


class GlobalDistillation(nn.Module):
    """Weighted global distillation: student [B, Ds], teacher [B, Dt], weights [B] -> scalar."""

    def __init__(
        self, student_dim: int, teacher_dim: int, normalization: str = "batch", always_project: bool = False
    ) -> None:
        super().__init__()
        self.projection = Projection(student_dim, teacher_dim, always_project)
        self.normalization = normalization

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        distance = cosine_distance(self.projection(student), teacher.to(student.dtype))
        return _weighted_mean(distance, weights, self.normalization)


class LabelDistillation(nn.Module):
    """Weighted label-feature distillation over the classes present in the image.

    student_units [B, U, ds], teacher_units [B, U, dt], presence bool [B, U] (present for both),
    weights [B]. Per sample the distance is averaged over its present units (so an image with many
    classes does not outweigh one with few); samples with no present unit contribute 0.
    """

    def __init__(
        self, student_dim: int, teacher_dim: int, normalization: str = "batch", always_project: bool = False
    ) -> None:
        super().__init__()
        self.projection = Projection(student_dim, teacher_dim, always_project)
        self.normalization = normalization

    def forward(
        self, student_units: torch.Tensor, teacher_units: torch.Tensor, presence: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        distance = cosine_distance(self.projection(student_units), teacher_units.to(student_units.dtype))
        present = presence.to(distance.dtype)
        per_sample = (distance * present).sum(1) / present.sum(1).clamp(min=1.0)
        return _weighted_mean(per_sample, weights, self.normalization)


def positive_pairs(place_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (i, j), i < j, of batch images from the same place: place_labels [B] -> 2 x [P]."""
    same = place_labels.unsqueeze(0) == place_labels.unsqueeze(1)
    first, second = torch.nonzero(torch.triu(same, diagonal=1), as_tuple=True)
    return first, second


def semantic_alignment(
    units: torch.Tensor, unit_areas: torch.Tensor, unit_presence: torch.Tensor, place_labels: torch.Tensor
) -> torch.Tensor:
    """Explicit semantic alignment between query/positive label features of one model.

    units [B, U, d], unit_areas [B, U] (area fractions), unit_presence bool [B, U], place_labels [B].
    For every same-place pair, the units present in both images are pulled together with weight
    min(area_i, area_j); the loss is the weighted mean 1 - cos (0 when no pair shares a class).
    """
    first, second = positive_pairs(place_labels)
    if first.numel() == 0:
        return units.sum() * 0.0
    both = (unit_presence[first] & unit_presence[second]).to(units.dtype)
    pair_weights = torch.minimum(unit_areas[first], unit_areas[second]).to(units.dtype) * both
    distance = cosine_distance(units[first], units[second])
    return (pair_weights * distance).sum() / pair_weights.sum().clamp(min=1e-8)
