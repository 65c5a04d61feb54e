"""Builders for the town's static objects: buildings, trees, hedges, walls, fences, poles, signs.

Each function appends primitives to a `PrimitiveBuilder`; colours are linear albedo in [0, 1].
Parameters are drawn from the `rng` passed in, so one seed gives one town.
"""

from __future__ import annotations

import numpy as np

from structvpr.data.synth import classes as C
from structvpr.data.synth.primitives import Material, PrimitiveBuilder

# Facade colours: brick, sandstone, plaster, concrete, pastel, dark cladding.
FACADE_PALETTE = np.array(
    [
        [0.55, 0.25, 0.18],
        [0.72, 0.62, 0.45],
        [0.85, 0.82, 0.74],
        [0.55, 0.55, 0.55],
        [0.80, 0.66, 0.62],
        [0.62, 0.72, 0.78],
        [0.30, 0.30, 0.33],
        [0.78, 0.70, 0.40],
        [0.45, 0.50, 0.40],
        [0.92, 0.90, 0.88],
    ]
)
FOLIAGE_PALETTE = np.array(
    [[0.20, 0.36, 0.12], [0.28, 0.42, 0.15], [0.15, 0.30, 0.16], [0.35, 0.45, 0.18], [0.22, 0.33, 0.20]]
)
SIGN_PALETTE = np.array(
    [[0.80, 0.10, 0.10], [0.10, 0.25, 0.75], [0.95, 0.95, 0.95], [0.95, 0.80, 0.10], [0.10, 0.55, 0.25]]
)


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float = 0.06) -> tuple:
    return tuple(float(v) for v in np.clip(colour + rng.uniform(-amount, amount, 3), 0.02, 0.98))


def building(b: PrimitiveBuilder, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float) -> float:
    """A box building on footprint [x0, x1] x [y0, y1]; returns its height in metres."""
    storeys = int(rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 14], p=[0.05, 0.10, 0.18, 0.20, 0.17, 0.12, 0.08, 0.06, 0.04]))
    floor_height = rng.uniform(2.9, 3.7)
    height = storeys * floor_height + rng.uniform(0.3, 1.2)
    spacing = rng.uniform(2.0, 4.2)
    params = (
        floor_height,
        spacing,
        spacing * rng.uniform(0.3, 0.7),
        floor_height * rng.uniform(0.35, 0.65),
        float(rng.random() < 0.45),
        float(rng.integers(0, 4)),
    )  # last: window tint style
    colour = _jitter(rng, FACADE_PALETTE[rng.integers(len(FACADE_PALETTE))])
    b.box(x0, y0, x1, y1, 0.0, height, C.BUILDING, Material.FACADE, colour, params)
    return height


def tree(b: PrimitiveBuilder, rng: np.random.Generator, x: float, y: float, scale: float = 1.0) -> None:
    """Trunk (cylinder) + crown (ellipsoid); both are vegetation, as Cityscapes labels trees."""
    radius = rng.uniform(1.3, 2.8) * scale
    radius_z = radius * rng.uniform(0.9, 1.6)
    trunk_top = rng.uniform(2.0, 3.5) * scale
    bark = _jitter(rng, np.array([0.30, 0.22, 0.15]), 0.05)
    b.cylinder(
        x, y, rng.uniform(0.12, 0.28) * scale, 0.0, trunk_top + radius_z * 0.5, C.VEGETATION, Material.TRUNK, bark
    )
    leaves = _jitter(rng, FOLIAGE_PALETTE[rng.integers(len(FOLIAGE_PALETTE))], 0.04)
    b.ellipsoid(
        x, y, trunk_top + radius_z * 0.8, radius, radius_z, C.VEGETATION, Material.FOLIAGE, leaves, (1.0,)
    )  # params[0] = 1: a crown (bare in winter)


def barrier(
    b: PrimitiveBuilder, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float, kind: str
) -> None:
    """A hedge, wall or fence occupying the thin footprint [x0, x1] x [y0, y1]."""
    if kind == "hedge":
        colour = _jitter(rng, FOLIAGE_PALETTE[rng.integers(len(FOLIAGE_PALETTE))], 0.04)
        b.box(x0, y0, x1, y1, 0.0, rng.uniform(0.8, 1.6), C.VEGETATION, Material.FOLIAGE, colour)
    elif kind == "wall":
        colour = _jitter(rng, FACADE_PALETTE[rng.integers(len(FACADE_PALETTE))])
        b.box(x0, y0, x1, y1, 0.0, rng.uniform(1.0, 2.4), C.WALL, Material.PLAIN, colour)
    else:
        colour = _jitter(rng, np.array([0.35, 0.35, 0.32]), 0.1)
        b.box(
            x0, y0, x1, y1, 0.0, rng.uniform(1.1, 1.9), C.FENCE, Material.FENCE, colour, (rng.uniform(0.12, 0.3),)
        )  # params[0]: bar spacing in metres


def street_lamp(
    b: PrimitiveBuilder, x: float, y: float, height: float, toward_road: tuple[float, float], colour: tuple
) -> tuple[float, float, float]:
    """Pole with a lamp head over the road; returns the lamp head position (x, y, z)."""
    b.cylinder(x, y, 0.09, 0.0, height, C.POLE, Material.METAL, colour)
    hx, hy = x + toward_road[0] * 0.9, y + toward_road[1] * 0.9
    b.box(hx - 0.3, hy - 0.3, hx + 0.3, hy + 0.3, height - 0.25, height, C.POLE, Material.LAMP, colour)
    return hx, hy, height - 0.25


def traffic_sign(b: PrimitiveBuilder, rng: np.random.Generator, x: float, y: float, street_axis: int) -> None:
    """Sign pole with a plate facing along the street (so drivers see its face)."""
    top = rng.uniform(2.2, 3.0)
    b.cylinder(x, y, 0.045, 0.0, top, C.POLE, Material.METAL, (0.55, 0.56, 0.58))
    width, height = rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9)
    colour = tuple(float(v) for v in SIGN_PALETTE[rng.integers(len(SIGN_PALETTE))])
    # A plate 6 cm thick: its normal runs along the street (x when street_axis is 0, else y).
    half_x, half_y = (0.03, width / 2) if street_axis == 0 else (width / 2, 0.03)
    b.box(
        x - half_x,
        y - half_y,
        x + half_x,
        y + half_y,
        top - height,
        top,
        C.TRAFFIC_SIGN,
        Material.SIGN,
        colour,
        (float(rng.integers(0, 3)),),
    )


def traffic_light(b: PrimitiveBuilder, rng: np.random.Generator, x: float, y: float) -> None:
    """Pole with a signal housing (class traffic light) on top."""
    top = rng.uniform(3.2, 4.2)
    b.cylinder(x, y, 0.1, 0.0, top - 0.9, C.POLE, Material.METAL, (0.2, 0.2, 0.2))
    b.box(
        x - 0.18,
        y - 0.18,
        x + 0.18,
        y + 0.18,
        top - 1.0,
        top,
        C.TRAFFIC_LIGHT,
        Material.SIGNAL,
        (0.08, 0.08, 0.08),
        (top - 0.5, float(rng.integers(0, 3))),
    )
