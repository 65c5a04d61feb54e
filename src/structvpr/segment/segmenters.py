"""The Segmenter interface (images -> Cityscapes trainId label maps) and `build_segmenter(name)`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from structvpr.data.images import IMAGENET_MEAN, IMAGENET_STD, image_transform
from structvpr.data.label_maps import label_path_for
from structvpr.segment.cache import image_size_hw, read_label_map

SEGMENTER_NAMES = ("espnetv2", "hf", "precomputed")


class Segmenter(ABC):
    """Turns RGB images into uint8 Cityscapes trainId maps (0..18, 255 = ignore).

    Subclasses set `name`, `input_size` (H, W) the images are resized to, `mean`/`std` of the
    normalisation, `device`, and implement `_predict(batch) -> uint8 [B, H, W]` on that device.
    """

    name: str = "segmenter"
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    device: torch.device = torch.device("cpu")

    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """PIL RGB -> float32 [3, H, W] at `input_size`, normalised (safe to run in DataLoader workers)."""
        return image_transform(self.input_size, self.mean, self.std)

    def segment(self, images: torch.Tensor | Sequence[Image.Image]) -> torch.Tensor:
        """images: float [B, 3, H, W] already normalised, or a list of PIL RGB images (resized to
        `input_size`). Returns uint8 [B, H, W] trainIds on the CPU at the batch's size."""
        if not isinstance(images, torch.Tensor):
            transform = self.transform()
            images = torch.stack([transform(image.convert("RGB")) for image in images])
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name}: expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        with torch.inference_mode():
            labels = self._predict(images.to(self.device, torch.float32))
        return labels.to("cpu", torch.uint8)

    @abstractmethod
    def _predict(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 [B, 3, H, W] on `self.device` -> uint8/long [B, H, W] trainIds (255 = ignore)."""


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


def build_segmenter(name: str, device: str | torch.device = "cpu", **options: Any) -> Segmenter:
    """Segmenter by name.

    - `espnetv2`: width=2.0 (or 0.5), input_size=(256, 512) (H, W), weights=None (shipped file).
    - `hf`: model=<local path or hub id> (SegFormer / Mask2Former with Cityscapes labels),
      input_size=(512, 1024), local_files_only=False.
    - `precomputed`: reads `*_labels/<stem>.png` next to each image.
    """
    if name == "espnetv2":
        from structvpr.segment.espnetv2 import ESPNetv2Segmenter

        return ESPNetv2Segmenter(device=device, **options)
    if name == "hf":
        from structvpr.segment.hf import HFSegmenter

        return HFSegmenter(device=device, **options)
    if name == "precomputed":
        if options:
            raise ValueError(f"precomputed segmenter takes no options, got {sorted(options)}")
        return PrecomputedSegmenter(device=device)
    raise ValueError(f"unknown segmenter {name!r}; choose from {', '.join(SEGMENTER_NAMES)}")
