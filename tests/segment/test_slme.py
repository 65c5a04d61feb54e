"""SLME one-hot encoding and multi-level area masks A_l."""

from __future__ import annotations

import pytest
import torch

from structvpr.segment.slme import (
    boundary_map,
    level_masks,
    resize_labels,
    slme_one_hot,
)


def _random_merged(batch: int, height: int, width: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (batch, height, width), generator=generator, dtype=torch.uint8)
    ignore = torch.rand(batch, height, width, generator=generator) < 0.2
    return torch.where(ignore, torch.tensor(255, dtype=torch.uint8), labels)


def test_one_hot_sums_to_one_where_labelled_and_zero_at_ignore() -> None:
    merged = _random_merged(2, 32, 48, 6)
    one_hot = slme_one_hot(merged, 6)
    assert one_hot.shape == (2, 6, 32, 48) and one_hot.dtype == torch.float32
    sums = one_hot.sum(1)
    labelled = merged != 255
    assert torch.equal(sums[labelled], torch.ones(int(labelled.sum())))
    assert torch.equal(sums[~labelled], torch.zeros(int((~labelled).sum())))
    assert torch.equal(one_hot.argmax(1)[labelled], merged.long()[labelled])


def test_resize_is_nearest_and_never_mixes_ids() -> None:
    merged = torch.tensor([[[0, 0, 5, 5], [0, 0, 5, 5], [3, 3, 255, 255], [3, 3, 255, 255]]], dtype=torch.uint8)
    small = resize_labels(merged, (2, 2))
    assert small.tolist() == [[[0, 5], [3, 255]]]
    big = slme_one_hot(_random_merged(1, 17, 23, 4), 4, size=(40, 64))
    assert big.shape == (1, 4, 40, 64)
    assert set(big.unique().tolist()) <= {0.0, 1.0}  # bilinear would produce fractions


def test_ids_outside_k_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"ids \[6\] outside 0..5"):
        slme_one_hot(torch.tensor([[[0, 6]]], dtype=torch.uint8), 6)


def test_boundary_channel_marks_label_changes() -> None:
    merged = torch.tensor([[[1, 1, 2], [1, 1, 2], [1, 1, 2]]])
    one_hot = slme_one_hot(merged, 3, boundary=True)
    assert one_hot.shape == (1, 4, 3, 3)
    assert one_hot[0, 3].tolist() == [[0, 1, 1], [0, 1, 1], [0, 1, 1]]
    assert torch.equal(boundary_map(merged.long()), one_hot[:, 3])


def test_level_masks_sum_to_the_covered_fraction() -> None:
    merged = _random_merged(2, 64, 128, 6, seed=3)
    one_hot = slme_one_hot(merged, 6)
    sizes = [(16, 32), (8, 16), (4, 8), (2, 4)]
    masks = level_masks(one_hot, sizes)
    labelled = (merged != 255).float()
    for (h, w), mask in zip(sizes, masks, strict=False):
        assert mask.shape == (2, 6, h, w)
        cell_h, cell_w = 64 // h, 128 // w
        covered = labelled.view(2, h, cell_h, w, cell_w).mean(dim=(2, 4))
        assert torch.allclose(mask.sum(1), covered, atol=1e-6)
        # each entry is the share of its cell covered by that class
        share_of_2 = (merged == 2).float().view(2, h, cell_h, w, cell_w).mean(dim=(2, 4))
        assert torch.allclose(mask[:, 2], share_of_2, atol=1e-6)


def test_device_follows_the_input() -> None:
    merged = _random_merged(1, 8, 8, 3).to(torch.device("cpu"))
    one_hot = slme_one_hot(merged, 3, size=(4, 4))
    assert one_hot.device == merged.device
    assert all(m.device == merged.device for m in level_masks(one_hot, [(2, 2)]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu() -> None:
    merged = _random_merged(2, 32, 32, 6)
    cpu = level_masks(slme_one_hot(merged, 6, size=(16, 16)), [(4, 4)])[0]
    gpu = level_masks(slme_one_hot(merged.to("cuda"), 6, size=(16, 16)), [(4, 4)])[0]
    assert gpu.is_cuda and torch.allclose(gpu.cpu(), cpu)
