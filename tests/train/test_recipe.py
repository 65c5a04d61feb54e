"""The StructVPR++ recipe's pieces: contrastive distillation, relational temperatures, label-descriptor
distillation reaching the weighting module, contrastive alignment, schedules, the teacher-input encoder,
config checks and the teacher cache format."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from structvpr.config import ConfigError, load_config
from structvpr.model.label_features import LabelFeatureConfig, LabelFeatureHead
from structvpr.segment.classes import load_merge_table
from structvpr.segment.slme import teacher_input
from structvpr.train.distill_losses import (
    Projector,
    contrastive_alignment,
    contrastive_distillation,
    descriptor_distillation,
    relational_distillation,
    schedule_factor,
)
from structvpr.train.teacher_cache import TeacherCacheError, load_teacher_cache, save_teacher_cache


def test_contrastive_distillation_is_low_when_the_student_points_at_its_places_teacher_rows() -> None:
    bank = torch.eye(4)  # four teacher rows; rows 0, 1 are place A, rows 2, 3 place B
    positives = torch.tensor([[True, True, False, False], [False, False, True, True]])
    right = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    wrong = right.flip(0)
    weights = torch.ones(2)
    low = contrastive_distillation(right, bank, positives, weights, 0.1)
    high = contrastive_distillation(wrong, bank, positives, weights, 0.1)
    # By hand: -log((e^10 + 1) / (e^10 + 3)) for the right case.
    assert low.item() == pytest.approx(-math.log((math.exp(10) + 1) / (math.exp(10) + 3)), rel=1e-3)
    assert high.item() > 9.0
    assert contrastive_distillation(wrong, bank, positives, torch.zeros(2), 0.1).item() == 0.0


def test_relational_distillation_uses_each_models_own_temperature() -> None:
    torch.manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(6, 5), dim=1)
    student = torch.nn.functional.normalize(torch.randn(6, 3), dim=1)
    weights = torch.ones(6)
    # Same structure, sharper teacher: zero only when the student's temperature matches that scale.
    assert relational_distillation(teacher, teacher, weights, 0.1, 0.1).item() == pytest.approx(0.0, abs=1e-6)
    assert relational_distillation(teacher, teacher, weights, 0.05, 0.1).item() > 1e-3
    assert relational_distillation(student, teacher, weights, 0.1, 0.1).item() > 1e-3


def test_label_descriptor_distillation_trains_the_weighting_module_and_the_mlp() -> None:
    for variant in ("lmc", "mlp"):
        torch.manual_seed(0)
        head = LabelFeatureHead(
            LabelFeatureConfig(num_classes=3, exclude_classes=(), variant=variant, label_dim=8), [4, 4, 4, 4]
        )
        levels = [torch.randn(2, 4, 8, 8) for _ in range(4)]
        masks = torch.zeros(2, 3, 16, 16)
        masks[:, 0, :8], masks[:, 1, 8:, :8], masks[:, 2, 8:, 8:] = 1, 1, 1
        output = head(levels, masks)
        teacher = torch.randn(2, head.descriptor_dim)
        descriptor_distillation(output.descriptor, teacher, torch.ones(2)).backward()
        assert head.weighting.mlp[0].weight.grad.abs().sum() > 0
        if variant == "mlp":
            assert head.mlp[0].weight.grad.abs().sum() > 0


def test_contrastive_alignment_pushes_other_places_away() -> None:
    places = torch.tensor([0, 0, 1, 1])
    presence, areas = torch.ones(4, 1, dtype=torch.bool), torch.ones(4, 1)
    aligned = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 1.0]]])
    collapsed = torch.tensor([[[1.0, 0.0]]] * 4)  # the positives-only loss is 0 here; this one is not
    assert contrastive_alignment(aligned, areas, presence, places).item() < 1e-3
    assert contrastive_alignment(collapsed, areas, presence, places).item() == pytest.approx(math.log(3), rel=1e-4)


def test_schedules() -> None:
    assert schedule_factor("constant", 90, 100) == 1.0
    assert schedule_factor("linear_fade", 25, 100) == pytest.approx(0.75)
    assert schedule_factor("cosine_fade", 50, 100) == pytest.approx(0.5)
    assert schedule_factor("cosine_fade", 100, 100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule"):
        schedule_factor("step", 1, 2)


def test_projector_maps_into_teacher_space_with_unit_norm() -> None:
    projected = Projector(6, 10, hidden=16)(torch.randn(3, 6))
    assert projected.shape == (3, 10)
    assert torch.allclose(projected.norm(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("boundary", [False, True])
def test_teacher_input_has_the_channel_count_the_teacher_was_built_with(boundary: bool) -> None:
    from structvpr.model.branches import build_seg_branch

    table = load_merge_table("structural-6")
    config = load_config(None, ["model.pretrained=false", "model.image_size=[32,32]"])
    teacher = build_seg_branch(config, table, load_pretrained_weights=False)
    channels = teacher.config.in_channels + (1 if boundary else 0)
    label_maps = torch.randint(0, 19, (2, 48, 48), dtype=torch.uint8)
    encoded = teacher_input(label_maps, table, channels, teacher.config.image_size)
    assert encoded.shape == (2, channels, 32, 32)
    assert teacher.config.in_channels == table.num_classes
    if not boundary:
        assert teacher(encoded).shape[0] == 2  # the teacher accepts what the encoder makes
    with pytest.raises(ValueError, match="input channels"):
        teacher_input(label_maps, table, table.num_classes + 2, (32, 32))


@pytest.mark.parametrize("key", ["stage2_lr", "stage2_epochs"])
def test_a_zero_stage2_lr_or_epochs_is_refused_not_replaced(key: str) -> None:
    with pytest.raises(ConfigError, match=f"structvpr.{key} must be > 0"):
        load_config(None, [f"structvpr.{key}=0"])
    assert getattr(load_config(None, [f"structvpr.{key}=2"]).structvpr, key) == 2


def test_teacher_cache_v2_round_trip_and_an_old_cache_is_refused_with_advice(tmp_path) -> None:
    folder = tmp_path / "teacher_cache"
    targets = np.eye(3, 4, dtype=np.float32)
    save_teacher_cache(
        folder,
        ["a.jpg", "b.jpg", "c.jpg"],
        targets,
        np.array([0, 0, 1]),
        np.array([1.0, 0.5, 0.0]),
        {"target": "combined"},
        label_descriptors=np.ones((3, 2)),
        units=np.ones((3, 2, 2)),
        unit_presence=np.ones((3, 2), bool),
    )
    cache = load_teacher_cache(folder)
    assert (cache.target_name, cache.target_dim, cache.label_dim, cache.unit_dim) == ("combined", 4, 2, 2)
    rows = cache.lookup(torch.tensor([2, 0]), "cpu")
    assert rows["place"].tolist() == [1, 0] and torch.equal(rows["target"][1], torch.from_numpy(targets[0]))
    manifest = json.loads((folder / "cache.json").read_text())
    (folder / "cache.json").write_text(json.dumps({**manifest, "format": "structvpr-teacher-cache-v1"}))
    with pytest.raises(TeacherCacheError, match="run `structvpr partition` again"):
        load_teacher_cache(folder)
