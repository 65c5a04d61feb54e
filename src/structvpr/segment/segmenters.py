"""`build_segmenter(name)`: the registry of segmenters (the interface is segmenter.Segmenter).

Heavy segmenters (the ESPNetv2 network, transformers) are imported only when built.
"""

from __future__ import annotations

from typing import Any

import torch

from structvpr.segment.precomputed import PrecomputedSegmenter
from structvpr.segment.segmenter import Segmenter

__all__ = ["SEGMENTER_NAMES", "Segmenter", "build_segmenter"]

SEGMENTER_NAMES = ("espnetv2", "hf", "precomputed")


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
