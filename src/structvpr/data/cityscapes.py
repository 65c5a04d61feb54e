"""The Cityscapes trainIds every label map in structvpr uses: class names, palette, dynamic classes.

Label maps are data (uint8 `*_labels/<stem>.png`, 255 = ignore), so their id convention lives in
`data/`: the synthetic town writes these ids, segmenters predict them, `segment.classes` merges them.
"""

from __future__ import annotations

import numpy as np

IGNORE_ID = 255
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
NUM_CITYSCAPES_CLASSES = len(CITYSCAPES_CLASSES)
# The official Cityscapes palette (RGB), indexed by trainId.
CITYSCAPES_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)
IGNORE_COLOR = (0, 0, 0)
# Objects that move between visits carry no place information.
DYNAMIC_CLASS_IDS: frozenset[int] = frozenset(range(11, 19))

_PALETTE = np.zeros((256, 3), dtype=np.uint8)
_PALETTE[: len(CITYSCAPES_COLORS)] = CITYSCAPES_COLORS
_PALETTE[IGNORE_ID] = IGNORE_COLOR


def colorize_train_ids(labels: np.ndarray) -> np.ndarray:
    """uint8 trainIds [H, W] -> uint8 RGB [H, W, 3] in the Cityscapes palette (ignore and ids
    above 18 are black)."""
    return _PALETTE[np.asarray(labels).astype(np.intp)]
