"""Stage II losses: sample-weighted distillation from the frozen seg-branch and semantic alignment.

Global distillation (structvpr.distill_loss): `contrastive` (default) = InfoNCE of the projected
student descriptor against a bank of cached teacher descriptors, same-place rows as positives;
`cosine` = D(s, t) = 1 - cos(P s, t), with P a learned linear projection when the student's
dimension differs from the teacher's (identity otherwise); `relational` = KL between in-batch
similarity rows, each model with its own temperature. Per-sample weights w_i come from the offline partition;
a sample with w_i = 0 (group G4) contributes exactly zero loss and zero gradient.
"""

from __future__ import annotations

import math

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


class _ProjectedDistillation(nn.Module):
    """A weighted distillation whose student rows are projected to the teacher's dimension first
    (`projection`); `normalization` is how per-sample weights are normalised in a batch."""

    def __init__(
        self, student_dim: int, teacher_dim: int, normalization: str = "batch", always_project: bool = False
    ) -> None:
        super().__init__()
        self.projection = Projection(student_dim, teacher_dim, always_project)
        self.normalization = normalization


class GlobalDistillation(_ProjectedDistillation):
    """Weighted global distillation: student [B, Ds], teacher [B, Dt], weights [B] -> scalar."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        distance = cosine_distance(self.projection(student), teacher.to(student.dtype))
        return _weighted_mean(distance, weights, self.normalization)


class LabelDistillation(_ProjectedDistillation):
    """Weighted label-feature distillation over the classes present in the image.

    student_units [B, U, ds], teacher_units [B, U, dt], presence bool [B, U] (present for both),
    weights [B]. Per sample the distance is averaged over its present units (so an image with many
    classes does not outweigh one with few); samples with no present unit contribute 0.
    """

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


class Projector(nn.Module):
    """Training-only MLP from the student's descriptor space to the teacher's: [B, Ds] -> [B, Dt], unit norm.

    hidden = 0 gives one linear map. It lives in the Stage II module, never in the exported network.
    """

    def __init__(self, student_dim: int, teacher_dim: int, hidden: int = 512) -> None:
        super().__init__()
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(student_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, teacher_dim)
            )
        else:
            self.net = nn.Linear(student_dim, teacher_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(features), dim=-1)


def contrastive_distillation(
    student: torch.Tensor,
    bank: torch.Tensor,
    positives: torch.Tensor,
    weights: torch.Tensor,
    temperature: float,
    normalization: str = "batch",
) -> torch.Tensor:
    """Weighted InfoNCE of projected student descriptors against a bank of teacher descriptors.

    student [B, D] (unit norm, in teacher space); bank [M, D] teacher rows; positives bool [B, M]:
    which bank rows count as the sample's positives (its own row, and with place positives the rows
    of its place). Per sample: -log(sum over positives of softmax(student . bank / temperature)).
    Samples without a positive in the bank contribute 0.
    """
    logits = student @ bank.to(student.dtype).t() / temperature
    log_probability = logits.log_softmax(dim=1)
    has_positive = positives.any(dim=1)
    positive_log = torch.logsumexp(log_probability.masked_fill(~positives, float("-inf")), dim=1)
    per_sample = torch.where(has_positive, -positive_log, torch.zeros_like(positive_log))
    return _weighted_mean(per_sample, weights * has_positive.to(weights.dtype), normalization)


def relational_distillation(
    student: torch.Tensor,
    teacher: torch.Tensor,
    weights: torch.Tensor,
    teacher_temperature: float,
    student_temperature: float,
    normalization: str = "batch",
) -> torch.Tensor:
    """In-batch similarity-structure distillation: KL(teacher rows || student rows), own temperatures.

    student [B, Ds], teacher [B, Dt], both unit norm (any widths: only similarities are compared).
    Row i is the softmax over the other batch images of cos(i, j) / temperature.
    """
    count = student.shape[0]
    if count < 2:
        return student.sum() * 0.0
    off_diagonal = ~torch.eye(count, dtype=torch.bool, device=student.device)
    teacher = teacher.to(student.dtype)
    student_logits = (student @ student.t() / student_temperature).masked_fill(~off_diagonal, float("-inf"))
    teacher_logits = (teacher @ teacher.t() / teacher_temperature).masked_fill(~off_diagonal, float("-inf"))
    teacher_probability = teacher_logits.softmax(dim=1)
    log_ratio = teacher_logits.log_softmax(dim=1) - student_logits.log_softmax(dim=1)
    per_sample = (teacher_probability * log_ratio.masked_fill(~off_diagonal, 0.0)).sum(dim=1)
    return _weighted_mean(per_sample, weights, normalization)


def descriptor_distillation(
    student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor, normalization: str = "batch"
) -> torch.Tensor:
    """Weighted 1 - cos between two [B, D] descriptors; rows where the teacher is all zero count 0."""
    teacher = teacher.to(student.dtype)
    valid = (teacher.abs().sum(dim=1) > 0).to(weights.dtype)
    return _weighted_mean(cosine_distance(student, teacher), weights * valid, normalization)


def contrastive_alignment(
    units: torch.Tensor,
    unit_areas: torch.Tensor,
    unit_presence: torch.Tensor,
    place_labels: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Semantic alignment with negatives: per label unit, same-place images that show the class are
    positives and other places showing it are negatives (InfoNCE over the batch).

    units [B, U, d] (unit norm or 0), unit_areas [B, U], unit_presence bool [B, U], place_labels [B].
    Every anchor (image, unit) with at least one positive counts, weighted by its area. 0 when none.
    """
    count = units.shape[0]
    similarities = torch.einsum("iud,jud->uij", units, units) / temperature  # [U, B, B]
    present = unit_presence.t()  # [U, B]
    valid = present.unsqueeze(2) & present.unsqueeze(1)
    valid &= ~torch.eye(count, dtype=torch.bool, device=units.device).unsqueeze(0)
    same_place = (place_labels.unsqueeze(0) == place_labels.unsqueeze(1)).unsqueeze(0)
    positives = valid & same_place
    log_probability = similarities.masked_fill(~valid, float("-inf")).log_softmax(dim=2)
    has_positive = positives.any(dim=2)  # [U, B]
    if not bool(has_positive.any()):
        return units.sum() * 0.0
    positive_log = torch.logsumexp(log_probability.masked_fill(~positives, float("-inf")), dim=2)
    anchor_weights = unit_areas.t().to(units.dtype) * has_positive.to(units.dtype)
    per_anchor = torch.where(has_positive, -positive_log, torch.zeros_like(positive_log))
    return (anchor_weights * per_anchor).sum() / anchor_weights.sum().clamp(min=1e-8)


SCHEDULES = ("constant", "linear_fade", "cosine_fade")


def schedule_factor(schedule: str, step: int, total_steps: int) -> float:
    """Multiplier of the distillation weights at optimiser step `step` of `total_steps`: 1 for
    constant; 1 -> 0 linearly or along half a cosine for the fades."""
    if schedule not in SCHEDULES:
        raise ValueError(f"distill schedule {schedule!r} is not one of {SCHEDULES}")
    if schedule == "constant" or total_steps <= 0:
        return 1.0
    progress = min(max(step / total_steps, 0.0), 1.0)
    if schedule == "linear_fade":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
