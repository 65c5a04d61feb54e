"""Scene primitives of the synthetic town: axis-aligned boxes, vertical cylinders, ellipsoids.

Every object is one row of a struct-of-arrays table so that the ray caster can intersect all
of them at once with numpy. Coordinates are metres: x = east, y = north, z = up (ground z = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

BOX, CYLINDER, ELLIPSOID = 0, 1, 2


class Material(IntEnum):
    """How a primitive is textured and lit by `render.shade`."""

    FACADE = 0  # building walls with a window grid
    PLAIN = 1  # uniform colour with light noise
    FOLIAGE = 2  # hedges and tree crowns (bare branches in winter)
    TRUNK = 3
    METAL = 4  # poles
    LAMP = 5  # street-lamp head (emits at night)
    SIGNAL = 6  # traffic-light housing with three lamps
    SIGN = 7  # traffic-sign plate
    CAR_BODY = 8
    CAR_CABIN = 9
    CLOTH = 10  # people
    FENCE = 11  # vertical bars


@dataclass
class Primitives:
    """A table of M primitives.

    geom float64 [M, 6]: box (x0, y0, x1, y1, z0, z1); cylinder (cx, cy, r, 0, z0, z1);
    ellipsoid (cx, cy, r, rz, cz, 0) with horizontal radius r and vertical radius rz.
    shape int8 [M]; class_id uint8 [M] (Cityscapes trainId); material int8 [M];
    colour float32 [M, 3] linear albedo in [0, 1]; params float32 [M, 6] material-specific;
    key int64 [M] stable per-object hash seed for procedural textures.
    """

    shape: np.ndarray
    geom: np.ndarray
    class_id: np.ndarray
    material: np.ndarray
    colour: np.ndarray
    params: np.ndarray
    key: np.ndarray

    def __len__(self) -> int:
        return len(self.shape)

    def subset(self, index: np.ndarray) -> Primitives:
        """Rows selected by a boolean mask or an index array."""
        return Primitives(*(getattr(self, name)[index] for name in _FIELDS))

    def bounds_2d(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Footprint bounding circles: centre x [M], centre y [M], radius [M] (metres)."""
        g = self.geom
        is_box = self.shape == BOX
        cx = np.where(is_box, 0.5 * (g[:, 0] + g[:, 2]), g[:, 0])
        cy = np.where(is_box, 0.5 * (g[:, 1] + g[:, 3]), g[:, 1])
        radius = np.where(is_box, 0.5 * np.hypot(g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]), g[:, 2])
        return cx, cy, radius

    @staticmethod
    def concatenate(parts: list[Primitives]) -> Primitives:
        """Stack several tables into one."""
        return Primitives(*(np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS))


_FIELDS = ("shape", "geom", "class_id", "material", "colour", "params", "key")


class PrimitiveBuilder:
    """Accumulates primitives one by one (world generation is not speed critical)."""

    def __init__(self, key_offset: int = 0) -> None:
        self._rows: list[tuple] = []
        self._key_offset = key_offset

    def _add(
        self,
        shape: int,
        geom: tuple,
        class_id: int,
        material: Material,
        colour: tuple[float, float, float],
        params: tuple = (),
    ) -> None:
        padded = tuple(params) + (0.0,) * (6 - len(params))
        self._rows.append((shape, geom, class_id, int(material), colour, padded))

    def box(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        z0: float,
        z1: float,
        class_id: int,
        material: Material,
        colour,
        params: tuple = (),
    ) -> None:
        """Axis-aligned box [x0, x1] x [y0, y1] x [z0, z1] (metres)."""
        self._add(BOX, (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), z0, z1), class_id, material, colour, params)

    def cylinder(
        self,
        cx: float,
        cy: float,
        radius: float,
        z0: float,
        z1: float,
        class_id: int,
        material: Material,
        colour,
        params: tuple = (),
    ) -> None:
        """Vertical cylinder of `radius` around (cx, cy) from z0 to z1."""
        self._add(CYLINDER, (cx, cy, radius, 0.0, z0, z1), class_id, material, colour, params)

    def ellipsoid(
        self,
        cx: float,
        cy: float,
        cz: float,
        radius: float,
        radius_z: float,
        class_id: int,
        material: Material,
        colour,
        params: tuple = (),
    ) -> None:
        """Ellipsoid with horizontal radius `radius` and vertical radius `radius_z`."""
        self._add(ELLIPSOID, (cx, cy, radius, radius_z, cz, 0.0), class_id, material, colour, params)

    def build(self) -> Primitives:
        """The accumulated rows as a `Primitives` table."""
        count = len(self._rows)
        if count == 0:
            return Primitives(
                np.zeros(0, np.int8),
                np.zeros((0, 6)),
                np.zeros(0, np.uint8),
                np.zeros(0, np.int8),
                np.zeros((0, 3), np.float32),
                np.zeros((0, 6), np.float32),
                np.zeros(0, np.int64),
            )
        shape, geom, class_id, material, colour, params = zip(*self._rows, strict=True)
        return Primitives(
            shape=np.asarray(shape, dtype=np.int8),
            geom=np.asarray(geom, dtype=np.float64),
            class_id=np.asarray(class_id, dtype=np.uint8),
            material=np.asarray(material, dtype=np.int8),
            colour=np.asarray(colour, dtype=np.float32),
            params=np.asarray(params, dtype=np.float32),
            key=np.arange(count, dtype=np.int64) + self._key_offset,
        )
