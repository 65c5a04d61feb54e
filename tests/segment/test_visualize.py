"""Coloured label maps and side-by-side previews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from structvpr.segment.classes import CITYSCAPES_COLORS, load_merge_table
from structvpr.segment.visualize import colorize, save_side_by_side, side_by_side


def test_colorize_raw_and_merged() -> None:
    labels = np.array([[0, 10, 255], [13, 11, 9]], dtype=np.uint8)
    raw = colorize(labels)
    assert raw.shape == (2, 3, 3) and raw.dtype == np.uint8
    assert tuple(raw[0, 1]) == CITYSCAPES_COLORS[10] and tuple(raw[0, 2]) == (0, 0, 0)
    merged = colorize(labels, load_merge_table("structural-6"))
    # terrain (9) joins road in "ground"; car (13) and person (11) share the "dynamic" colour (person's)
    assert tuple(merged[1, 2]) == CITYSCAPES_COLORS[0]
    assert tuple(merged[1, 0]) == tuple(merged[1, 1]) == CITYSCAPES_COLORS[11]


def test_side_by_side_puts_image_raw_and_merged_in_a_row(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (10, 200, 30))
    labels = np.full((10, 20), 2, dtype=np.uint8)
    picture = side_by_side(image, labels, load_merge_table())
    assert picture.size == (60, 10)
    assert picture.getpixel((5, 5)) == (10, 200, 30) and picture.getpixel((25, 5)) == CITYSCAPES_COLORS[2]
    save_side_by_side(tmp_path / "p.png", image, labels)
    assert Image.open(tmp_path / "p.png").size == (40, 10)
