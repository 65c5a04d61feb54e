"""Short names for the Cityscapes trainIds (data/cityscapes.py) the synthetic town draws."""

from __future__ import annotations

from structvpr.data.cityscapes import DYNAMIC_CLASS_IDS, IGNORE_ID

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = 0, 1, 2, 3, 4, 5, 6, 7
VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR = 8, 9, 10, 11, 12, 13
IGNORE = IGNORE_ID
DYNAMIC_CLASSES = tuple(sorted(DYNAMIC_CLASS_IDS))
