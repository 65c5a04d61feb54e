"""Stage II losses: weighted global/label distillation and semantic alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from structvpr.train.distill_losses import (
    GlobalDistillation,
    LabelDistillation,
    positive_pairs,
    semantic_alignment,
)
from structvpr.train.partition import assign_groups, group_weights


def test_global_distillation_is_one_minus_cosine() -> None:
    loss = GlobalDistillation(2, 2)
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    teacher = torch.tensor([[0.0, 3.0], [2.0, 0.0]])  # orthogonal (D = 1), parallel (D = 0)
    assert loss(student, teacher, torch.ones(2)).item() == pytest.approx(0.5)
    assert loss(student, teacher, torch.tensor([0.0, 1.0])).item() == pytest.approx(0.0)
    assert sum(p.numel() for p in loss.parameters()) == 0  # equal dims: no projection


def test_projection_appears_when_dimensions_differ() -> None:
    loss = GlobalDistillation(8, 5)
    assert loss.projection.linear.weight.shape == (5, 8)
    value = loss(torch.randn(3, 8), torch.randn(3, 5), torch.ones(3))
    value.backward()
    assert loss.projection.linear.weight.grad is not None


def test_always_project_learns_a_map_for_equal_widths() -> None:
    loss = GlobalDistillation(6, 6, always_project=True)
    assert loss.projection.linear.weight.shape == (6, 6)
    loss(torch.randn(2, 6), torch.randn(2, 6), torch.ones(2)).backward()
    assert loss.projection.linear.weight.grad.abs().sum() > 0


def test_g4_sample_contributes_zero_distillation_gradient() -> None:
    torch.manual_seed(0)
    # Hand-made ranks: sample 2 is G4 (teacher wrong at rank 7, student right at rank 1).
    groups = assign_groups(np.array([1, 1, 7, 9]), np.array([4, 1, 1, 3]), k=1)
    assert groups.tolist() == [1, 2, 4, 3]
    weights = torch.from_numpy(group_weights(groups))
    student_global = torch.randn(4, 16, requires_grad=True)
    student_units = torch.randn(4, 3, 8, requires_grad=True)
    teacher_global, teacher_units = torch.randn(4, 16), torch.randn(4, 3, 8)
    presence = torch.ones(4, 3, dtype=torch.bool)
    for normalization in ("batch", "weight_sum"):
        student_global.grad = student_units.grad = None
        total = GlobalDistillation(16, 16, normalization)(student_global, teacher_global, weights) + LabelDistillation(
            8, 8, normalization
        )(student_units, teacher_units, presence, weights)
        total.backward()
        assert torch.count_nonzero(student_global.grad[2]) == 0
        assert torch.count_nonzero(student_units.grad[2]) == 0
        for other in (0, 1, 3):
            assert student_global.grad[other].abs().sum() > 0
            assert student_units.grad[other].abs().sum() > 0


def test_label_distillation_ignores_absent_classes() -> None:
    student = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]], requires_grad=True)
    teacher = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # unit 0 agrees, unit 1 is orthogonal
    presence = torch.tensor([[True, False]])
    loss = LabelDistillation(2, 2)(student, teacher, presence, torch.ones(1))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.count_nonzero(student.grad[0, 1]) == 0
    presence[0, 1] = True
    assert LabelDistillation(2, 2)(student, teacher, presence, torch.ones(1)).item() == pytest.approx(0.5)


def test_positive_pairs_from_place_labels() -> None:
    first, second = positive_pairs(torch.tensor([3, 3, 5, 3, 5]))
    assert sorted(zip(first.tolist(), second.tolist(), strict=False)) == [(0, 1), (0, 3), (1, 3), (2, 4)]


def test_alignment_uses_shared_classes_weighted_by_min_area() -> None:
    units = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    areas = torch.tensor([[0.6, 0.2], [0.1, 0.5], [0.9, 0.9]])
    presence = torch.tensor([[True, True], [True, True], [True, True]])
    labels = torch.tensor([0, 0, 1])  # only images 0 and 1 are a positive pair
    # unit 0: D = 1 with weight min(0.6, 0.1) = 0.1; unit 1: D = 0 with weight 0.2.
    assert semantic_alignment(units, areas, presence, labels).item() == pytest.approx(0.1 / 0.3)
    presence[1, 0] = False  # class 0 absent from image 1: only unit 1 (D = 0) counts
    assert semantic_alignment(units, areas, presence, labels).item() == pytest.approx(0.0)
    no_pairs = semantic_alignment(units, areas, presence, torch.tensor([0, 1, 2]))
    assert no_pairs.item() == 0.0
