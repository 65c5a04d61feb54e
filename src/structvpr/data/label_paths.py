"""Where the label map of an image lives: a parallel `<folder>_labels/<stem>.png` tree."""

from __future__ import annotations

from pathlib import Path


def label_path_for(image_path: str | Path) -> Path:
    """`.../database/x.jpg` -> `.../database_labels/x.png` (uint8 Cityscapes trainIds, 255 = ignore)."""
    image_path = Path(image_path)
    return image_path.parent.with_name(image_path.parent.name + "_labels") / (image_path.stem + ".png")
