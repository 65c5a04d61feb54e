"""The Segmenter interface: RGB images -> uint8 Cityscapes trainId label maps.

Every segmenter (espnetv2.py, hf.py, precomputed.py) subclasses `Segmenter`; `segmenters.py`
builds one by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from structvpr.data.images import IMAGENET_MEAN, IMAGENET_STD, image_transform


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
