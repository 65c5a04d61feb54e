"""Cityscapes trainIds used by the synthetic town, and their conventional display colours.

Kept here (not imported from `structvpr.segment`) because `data/` must not depend on the
segmentation package; the ids are the public Cityscapes trainIds, so they agree by definition.
"""

from __future__ import annotations

import numpy as np

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = 0, 1, 2, 3, 4, 5, 6, 7
VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR = 8, 9, 10, 11, 12, 13
IGNORE = 255
DYNAMIC_CLASSES = (11, 12, 13, 14, 15, 16, 17, 18)

# Cityscapes colour palette indexed by trainId (19 classes); everything else is black.
_CITYSCAPES_COLOURS = [
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
]


def colourise_labels(labels: np.ndarray) -> np.ndarray:
    """uint8 trainIds [H, W] -> uint8 RGB [H, W, 3] in Cityscapes colours (ignore = black)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(_CITYSCAPES_COLOURS)] = np.asarray(_CITYSCAPES_COLOURS, dtype=np.uint8)
    return palette[labels]
