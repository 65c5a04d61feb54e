"""ESPNetv2 written in structvpr reproduces the independent reference outputs with the shipped weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from structvpr.io_utils import sha256_of_file
from structvpr.segment.espnetv2 import (
    SHIPPED_WEIGHTS,
    ESPNetv2Segmenter,
    load_espnetv2,
    shipped_weights_path,
)

INPUTS = ("nordland_summer_01000", "drawn_street")


@pytest.fixture(scope="module", params=[2.0, 0.5], ids=["s2.0", "s0.5"])
def segmenter(request) -> ESPNetv2Segmenter:
    return ESPNetv2Segmenter(width=request.param)


@pytest.mark.parametrize("name", INPUTS)
def test_matches_reference_logits_and_labels(segmenter: ESPNetv2Segmenter, shared_dir: Path, name: str) -> None:
    reference = shared_dir / "reference" / "espnetv2"
    batch = torch.from_numpy(np.load(reference / f"input_{name}.npy"))
    logits = segmenter.logits(batch)
    assert logits.shape == (1, 20, 256, 512)
    expected_logits = np.load(reference / f"logits_s{segmenter.width}_{name}_every8px.npy")
    assert np.abs(logits[0, :, ::8, ::8].numpy() - expected_logits).max() < 1e-3

    expected = np.array(Image.open(reference / f"labels_s{segmenter.width}_{name}.png"))
    expected = np.where(expected == 19, 255, expected)  # background -> ignore
    labels = segmenter.labels_from_logits(logits)  # the path segment() takes, without a second forward
    assert labels.dtype == torch.uint8 and labels.shape == (1, 256, 512)
    assert (labels[0].numpy() == expected).mean() >= 0.995


def test_shipped_weights_are_the_published_files(shared_dir: Path) -> None:
    for width, (file_name, digest) in SHIPPED_WEIGHTS.items():
        path = shipped_weights_path(width)
        assert (
            sha256_of_file(path) == digest == sha256_of_file(shared_dir / "weights" / "espnetv2_cityscapes" / file_name)
        )
    assert (shipped_weights_path(2.0).parent / "LICENSE_MIT.txt").is_file()


def test_wrong_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not ESPNetv2 s=2.0"):
        load_espnetv2(2.0, weights=shipped_weights_path(0.5))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="junk.pth"):
        load_espnetv2(0.5, weights=junk)
    with pytest.raises(ValueError, match="s=1.0"):
        shipped_weights_path(1.0)


def test_pil_images_of_any_size_are_resized_to_the_input_size() -> None:
    segmenter = ESPNetv2Segmenter(width=0.5, input_size=(64, 128))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((50, 90), (120, 160))]
    labels = segmenter.segment(images)
    assert labels.shape == (2, 64, 128) and labels.dtype == torch.uint8
    values = set(labels.unique().tolist())
    assert values <= set(range(19)) | {255}
    # the same image as a pre-normalised tensor gives the same labels
    tensor = segmenter.transform()(images[1])[None]
    assert torch.equal(segmenter.segment(tensor)[0], labels[1])


def test_input_sides_must_be_multiples_of_16() -> None:
    with pytest.raises(ValueError, match="multiples of 16, got 100x64"):
        ESPNetv2Segmenter(width=0.5, input_size=(64, 100))
    segmenter = ESPNetv2Segmenter(width=0.5, input_size=(32, 64))
    with pytest.raises(ValueError, match="got 40x24"):
        segmenter.segment(torch.zeros(1, 3, 24, 40))
