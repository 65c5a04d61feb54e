"""Hugging Face `transformers` adapter: SegFormer-style (per-pixel logits) or Mask2Former-style
(mask + class queries) Cityscapes models, loaded from a local folder or a hub id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from structvpr.data.images import IMAGENET_MEAN, IMAGENET_STD
from structvpr.segment.classes import CITYSCAPES_CLASSES, IGNORE_ID
from structvpr.segment.segmenter import Segmenter

DEFAULT_INPUT_SIZE = (512, 1024)  # (H, W): Cityscapes aspect ratio at half resolution
UNIVERSAL_MODEL_TYPES = ("mask2former", "maskformer", "oneformer")
# Other spellings of Cityscapes class names found in model cards.
NAME_ALIASES = {
    "motorbike": "motorcycle",
    "bike": "bicycle",
    "trafficlight": "traffic light",
    "trafficsign": "traffic sign",
    "vegetation/tree": "vegetation",
    "pedestrian": "person",
}


def _normalise_name(name: str) -> str:
    name = name.strip().lower().replace("_", " ").replace("-", " ")
    return NAME_ALIASES.get(name.replace(" ", ""), NAME_ALIASES.get(name, name))


def class_to_train_id(id2label: Mapping[int | str, str]) -> torch.Tensor:
    """Model output index -> Cityscapes trainId (255 for extra labels such as "void").

    Raises ValueError unless all 19 Cityscapes classes are among the labels: a model trained on
    another label set (ADE20k shares "wall", "sky", "car"...) would give silently partial maps.
    """
    indices = {int(k): v for k, v in id2label.items()}
    mapping = torch.full((max(indices) + 1,), IGNORE_ID, dtype=torch.long)
    for index, label in indices.items():
        name = _normalise_name(label)
        if name in CITYSCAPES_CLASSES:
            mapping[index] = CITYSCAPES_CLASSES.index(name)
    missing = [name for i, name in enumerate(CITYSCAPES_CLASSES) if i not in mapping.tolist()]
    if missing:
        raise ValueError(
            f"model labels lack the Cityscapes classes {missing}; the hf segmenter needs a "
            "Cityscapes-trained model (labels such as 'road', 'traffic light', ...)"
        )
    return mapping


class HFSegmenter(Segmenter):
    """A transformers segmentation model whose labels are (a superset of) the Cityscapes classes."""

    name = "hf"

    def __init__(
        self,
        model: str | Path,
        device: str | torch.device = "cpu",
        input_size: Sequence[int] = DEFAULT_INPUT_SIZE,
        local_files_only: bool = False,
    ) -> None:
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoModelForSemanticSegmentation,
            AutoModelForUniversalSegmentation,
        )

        self.device = torch.device(device)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        try:
            config = AutoConfig.from_pretrained(str(model), local_files_only=local_files_only)
        except OSError as error:
            raise FileNotFoundError(f"{model}: cannot load a transformers model config ({error})") from error
        self.universal = config.model_type in UNIVERSAL_MODEL_TYPES
        loader = AutoModelForUniversalSegmentation if self.universal else AutoModelForSemanticSegmentation
        self.model = loader.from_pretrained(str(model), local_files_only=local_files_only).to(self.device).eval()
        self._to_train_id = class_to_train_id(config.id2label).to(self.device)
        try:  # the model's own normalisation when an image processor is saved with it
            processor = AutoImageProcessor.from_pretrained(str(model), local_files_only=local_files_only)
            self.mean = tuple(processor.image_mean)
            self.std = tuple(processor.image_std)
        except (OSError, ValueError, AttributeError, TypeError):
            self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    def class_scores(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 [B, 3, H, W] -> per-class scores [B, C, H, W] at the batch size (model label order)."""
        size = batch.shape[2:]
        outputs = self.model(pixel_values=batch)
        if not self.universal:
            return F.interpolate(outputs.logits, size=size, mode="bilinear", align_corners=False)
        # Mask2Former semantic inference: sum over queries of P(class | query) * P(pixel in mask).
        class_probs = outputs.class_queries_logits.softmax(-1)[..., :-1]  # drop "no object"
        masks = F.interpolate(outputs.masks_queries_logits, size=size, mode="bilinear", align_corners=False).sigmoid()
        return torch.einsum("bqc,bqhw->bchw", class_probs, masks)

    def _predict(self, batch: torch.Tensor) -> torch.Tensor:
        return self._to_train_id[self.class_scores(batch).argmax(1)]
