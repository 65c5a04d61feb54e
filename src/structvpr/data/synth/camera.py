"""Street-level pinhole camera with zero roll and pitch, and pose jitter between visits.

Pitch is modelled as a vertical shift of the principal point (a shift lens), which keeps every
image column a vertical plane: that is what lets the ray caster work column by column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from structvpr.data.synth.world import Place


@dataclass(frozen=True)
class PoseJitter:
    """Uniform half-ranges of the per-visit pose perturbation."""

    along_m: float = 2.0
    lateral_m: float = 0.6
    yaw_deg: float = 7.0
    height_m: float = 0.15
    horizon_fraction: float = 0.03


@dataclass(frozen=True)
class Camera:
    """Camera at (x, y, height) metres, yaw in radians counter-clockwise from east."""

    x: float
    y: float
    height: float
    yaw: float
    image_size: tuple[int, int]  # (H, W)
    hfov_deg: float = 80.0
    horizon_fraction: float = 0.48  # horizon row as a fraction of H from the top

    @property
    def focal(self) -> float:
        """Focal length in pixels (square pixels)."""
        return 0.5 * self.image_size[1] / math.tan(math.radians(self.hfov_deg) / 2)

    @property
    def principal_point(self) -> tuple[float, float]:
        """(cx, cy) in pixels; cy is the horizon row."""
        return 0.5 * (self.image_size[1] - 1), self.horizon_fraction * (self.image_size[0] - 1)

    @property
    def heading_deg(self) -> float:
        """Compass heading in degrees (0 = north, 90 = east)."""
        return (90.0 - math.degrees(self.yaw)) % 360.0

    def column_directions(self) -> tuple[np.ndarray, np.ndarray]:
        """World xy direction of each image column, float64 [W] each, with unit forward component.

        A point at parameter t along column c lies at camera depth t (distance along the axis).
        """
        cx, _ = self.principal_point
        offsets = (np.arange(self.image_size[1]) - cx) / self.focal  # + to the right
        fx, fy = math.cos(self.yaw), math.sin(self.yaw)
        return fx + offsets * fy, fy - offsets * fx


DEFAULT_JITTER = PoseJitter()


def camera_for_visit(
    place: Place,
    rng: np.random.Generator,
    image_size: tuple[int, int],
    jitter: PoseJitter = DEFAULT_JITTER,
    hfov_deg: float = 80.0,
) -> Camera:
    """The camera of one visit to `place`, perturbed by `jitter` (uniform in each half-range)."""
    along = rng.uniform(-jitter.along_m, jitter.along_m)
    lateral = rng.uniform(-jitter.lateral_m, jitter.lateral_m)
    fx, fy = math.cos(place.yaw), math.sin(place.yaw)
    return Camera(
        x=place.x + along * fx + lateral * fy,
        y=place.y + along * fy - lateral * fx,
        height=2.0 + rng.uniform(-jitter.height_m, jitter.height_m),
        yaw=place.yaw + math.radians(rng.uniform(-jitter.yaw_deg, jitter.yaw_deg)),
        image_size=(int(image_size[0]), int(image_size[1])),
        hfov_deg=hfov_deg,
        horizon_fraction=0.48 + rng.uniform(-jitter.horizon_fraction, jitter.horizon_fraction),
    )
