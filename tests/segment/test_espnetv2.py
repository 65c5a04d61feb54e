"""ESPNetv2 written in structvpr reproduces the independent reference outputs with the shipped weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as tvf
from PIL import Image

from structvpr.io_utils import sha256_of_file
from structvpr.segment.espnetv2 import (
    SHIPPED_WEIGHTS,
    ESPNetv2Segmenter,
    load_espnetv2,
    shipped_weights_path,
)

# name -> (source image under tests/fixtures, SHA-256 of the original reference input array's bytes)
INPUTS = {
    "nordland_summer_01000": (
        "nordland_64x32/summer/images-01000.png",
        "e141a2dea953334b863112a9e8ad755138af1bfa7d036ee95b8ba9998231a42b",
    ),
    "drawn_street": ("espnetv2/drawn_street.png", "bd27df7d695c126be10cc10e4328cb0caf85a9c86bf593392110b5e0c7335b69"),
}
# SHA-256 of the published EdgeNets weight files (measured on the downloaded originals).
PUBLISHED_WEIGHTS_SHA256 = {
    "espnetv2_s_2.0_city_1024x512.pth": "a72d59699801c7ce8e8b89a53af9097eaaa60dc12180ecde86fd700ba1222fe8",
    "espnetv2_s_0.5_city_1024x512.pth": "9412a86a30f137540ef945d08da3cb7191448956c56c41a64210dab443a9f65f",
}


def reference_input(fixtures_dir: Path, name: str) -> torch.Tensor:
    """float32 [1, 3, 256, 512]: the reference procedure (PIL bilinear to 512x256, /255, ImageNet
    mean/std), independent of structvpr's own transform; byte-identical to the original input."""
    source, digest = INPUTS[name]
    image = Image.open(fixtures_dir / source).convert("RGB").resize((512, 256), Image.BILINEAR)
    batch = tvf.normalize(tvf.to_tensor(image), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])[None]
    assert hashlib.sha256(batch.numpy().tobytes()).hexdigest() == digest, f"{name}: input differs from the reference"
    return batch


@pytest.fixture(scope="module", params=[2.0, 0.5], ids=["s2.0", "s0.5"])
def segmenter(request) -> ESPNetv2Segmenter:
    return ESPNetv2Segmenter(width=request.param)


@pytest.mark.parametrize("name", list(INPUTS))
def test_matches_reference_logits_and_labels(segmenter: ESPNetv2Segmenter, fixtures_dir: Path, name: str) -> None:
    reference = fixtures_dir / "espnetv2"
    batch = reference_input(fixtures_dir, name)
    logits = segmenter.logits(batch)
    assert logits.shape == (1, 20, 256, 512)
    expected_logits = np.load(reference / f"logits_s{segmenter.width}_{name}_every8px.npy")
    assert np.abs(logits[0, :, ::8, ::8].numpy() - expected_logits).max() < 1e-3

    expected = np.array(Image.open(reference / f"labels_s{segmenter.width}_{name}.png"))
    expected = np.where(expected == 19, 255, expected)  # background -> ignore
    labels = segmenter.labels_from_logits(logits)  # the path segment() takes, without a second forward
    assert labels.dtype == torch.uint8 and labels.shape == (1, 256, 512)
    assert (labels[0].numpy() == expected).mean() >= 0.995


def test_shipped_weights_are_the_published_files() -> None:
    assert {file_name for file_name, _ in SHIPPED_WEIGHTS.values()} == set(PUBLISHED_WEIGHTS_SHA256)
    for width, (file_name, digest) in SHIPPED_WEIGHTS.items():
        path = shipped_weights_path(width)
        assert sha256_of_file(path) == digest == PUBLISHED_WEIGHTS_SHA256[file_name]
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
