"""Coloured label maps (raw trainIds or merged groups), side by side with the RGB image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from structvpr.data.cityscapes import IGNORE_COLOR, IGNORE_ID, colorize_train_ids
from structvpr.segment.classes import MergeTable


def colorize(labels: np.ndarray, table: MergeTable | None = None) -> np.ndarray:
    """uint8 [H, W] trainIds -> uint8 [H, W, 3] RGB in the Cityscapes palette; with `table`, the map is
    merged first and each group drawn in the colour of its first class. Ignore is black."""
    labels = np.asarray(labels)
    if table is None:
        return colorize_train_ids(labels)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: table.num_classes] = table.colors
    palette[IGNORE_ID] = IGNORE_COLOR
    return palette[table.merge(labels).astype(np.intp)]


def side_by_side(image: Image.Image, labels: np.ndarray, table: MergeTable | None = None) -> Image.Image:
    """One RGB picture: the image, the raw coloured labels and (with `table`) the merged labels,
    left to right at the label map's size."""
    height, width = np.asarray(labels).shape
    panels = [np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)), colorize(labels)]
    if table is not None:
        panels.append(colorize(labels, table))
    return Image.fromarray(np.concatenate(panels, axis=1))


def save_side_by_side(
    path: str | Path, image: Image.Image, labels: np.ndarray, table: MergeTable | None = None
) -> None:
    """Write `side_by_side(...)` as a PNG (atomically)."""
    import io

    from structvpr.io_utils import atomic_write_bytes

    buffer = io.BytesIO()
    side_by_side(image, labels, table).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
