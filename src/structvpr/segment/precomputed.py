"""The precomputed segmenter: reads existing label maps instead of predicting them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from structvpr.data.label_maps import label_path_for, read_label_map
from structvpr.segment.cache import image_size_hw
from structvpr.segment.segmenter import Segmenter


class PrecomputedSegmenter(Segmenter):
    """Reads existing label maps from the parallel `*_labels/<stem>.png` tree instead of predicting."""

    name = "precomputed"

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    def label_map(self, image_path: str | Path) -> np.ndarray:
        """uint8 [H, W] trainIds of `image_path`, checked against the image's size and the id range
        (LabelMapError naming the file otherwise)."""
        return read_label_map(label_path_for(image_path), expected_hw=image_size_hw(image_path))

    def segment(self, images: Sequence[str | Path]) -> torch.Tensor:  # type: ignore[override]
        """images: image *paths* (their label maps must exist). Returns uint8 [B, H, W]."""
        if isinstance(images, torch.Tensor) or any(isinstance(i, Image.Image) for i in images):
            raise TypeError("the precomputed segmenter reads label maps by image path; pass paths")
        maps = [self.label_map(path) for path in images]
        if len({m.shape for m in maps}) > 1:
            raise ValueError("precomputed label maps differ in size; call label_map(path) one by one")
        return torch.from_numpy(np.stack(maps))

    def _predict(self, batch: torch.Tensor) -> torch.Tensor:
        raise TypeError("the precomputed segmenter has no network")
