"""Cars and people: dynamic objects drawn anew for every visit, so they differ between traversals."""

from __future__ import annotations

import numpy as np

from structvpr.data.synth import classes as C
from structvpr.data.synth.camera import Camera
from structvpr.data.synth.primitives import Material, PrimitiveBuilder, Primitives
from structvpr.data.synth.world import ROAD_HALF_WIDTH_M, SIDEWALK_WIDTH_M, Town

DYNAMIC_KEY_OFFSET = 1 << 40  # keeps texture keys of dynamic objects apart from static ones
CAR_COLOURS = np.array(
    [
        [0.9, 0.9, 0.9],
        [0.05, 0.05, 0.06],
        [0.6, 0.62, 0.65],
        [0.6, 0.08, 0.06],
        [0.1, 0.2, 0.5],
        [0.35, 0.36, 0.37],
        [0.12, 0.3, 0.18],
        [0.8, 0.65, 0.2],
    ]
)
CLOTH_COLOURS = np.array(
    [
        [0.1, 0.1, 0.12],
        [0.2, 0.25, 0.45],
        [0.55, 0.1, 0.1],
        [0.7, 0.7, 0.65],
        [0.3, 0.35, 0.2],
        [0.85, 0.6, 0.2],
        [0.4, 0.3, 0.25],
    ]
)
_LANES_M = np.array([-4.0, -1.75, 1.75, 4.0])  # parked, driving, driving, parked


def _nearby_streets(town: Town, camera: Camera, radius: float):
    """(axis, centreline) of streets within `radius` metres of the camera."""
    streets = [(0, y) for y in town.streets_y if abs(y - camera.y) < radius]
    return streets + [(1, x) for x in town.streets_x if abs(x - camera.x) < radius]


def dynamic_objects(
    town: Town,
    camera: Camera,
    rng: np.random.Generator,
    cars_per_100m: float = 3.0,
    people: float = 6.0,
    radius_m: float = 70.0,
) -> Primitives:
    """Cars on the nearby roads and people on the nearby sidewalks for one visit."""
    builder = PrimitiveBuilder(key_offset=DYNAMIC_KEY_OFFSET + int(rng.integers(1 << 30)))
    streets = _nearby_streets(town, camera, radius_m)
    for axis, centre in streets:
        cam_along = camera.x if axis == 0 else camera.y
        placed: list[tuple[float, float]] = []
        for _ in range(rng.poisson(cars_per_100m * 2 * radius_m / 100.0)):
            along = cam_along + rng.uniform(-radius_m, radius_m)
            lateral = float(rng.choice(_LANES_M, p=[0.3, 0.2, 0.2, 0.3]))
            length = rng.uniform(3.8, 4.8)
            if any(abs(along - a) < length + 1.0 and lat == lateral for a, lat in placed):
                continue
            x, y = (along, centre + lateral) if axis == 0 else (centre + lateral, along)
            if max(abs(x - camera.x), abs(y - camera.y)) < length / 2 + 2.5:
                continue  # never put a car on (or right in front of) the camera
            placed.append((along, lateral))
            # Right-hand traffic: the south/east lanes drive east/north.
            heading_positive = lateral < 0 if axis == 0 else lateral > 0
            _car(builder, rng, x, y, axis, length, facing=1.0 if heading_positive else -1.0)
    kerb = ROAD_HALF_WIDTH_M
    for _ in range(rng.poisson(people) if streets else 0):
        axis, centre = streets[int(rng.integers(len(streets)))]
        along = (camera.x if axis == 0 else camera.y) + rng.uniform(-45.0, 45.0)
        lateral = rng.choice([-1, 1]) * rng.uniform(kerb + 0.6, kerb + SIDEWALK_WIDTH_M - 0.4)
        x, y = (along, centre + lateral) if axis == 0 else (centre + lateral, along)
        if np.hypot(x - camera.x, y - camera.y) > 2.5:
            _person(builder, rng, x, y)
    return builder.build()


def _car(b: PrimitiveBuilder, rng, x: float, y: float, axis: int, length: float, facing: float) -> None:
    width = rng.uniform(1.7, 1.95)
    body_top = rng.uniform(0.85, 1.05)
    roof = body_top + rng.uniform(0.45, 0.65)
    colour = tuple(
        float(v) for v in np.clip(CAR_COLOURS[rng.integers(len(CAR_COLOURS))] + rng.uniform(-0.04, 0.04, 3), 0, 1)
    )
    half_l, half_w = length / 2, width / 2
    cab_l, cab_w = length * rng.uniform(0.25, 0.33), half_w * 0.9
    shift = -facing * length * 0.06
    params = (float(axis), facing, body_top)
    if axis == 0:
        b.box(x - half_l, y - half_w, x + half_l, y + half_w, 0.1, body_top, C.CAR, Material.CAR_BODY, colour, params)
        b.box(
            x + shift - cab_l,
            y - cab_w,
            x + shift + cab_l,
            y + cab_w,
            body_top,
            roof,
            C.CAR,
            Material.CAR_CABIN,
            colour,
            params,
        )
    else:
        b.box(x - half_w, y - half_l, x + half_w, y + half_l, 0.1, body_top, C.CAR, Material.CAR_BODY, colour, params)
        b.box(
            x - cab_w,
            y + shift - cab_l,
            x + cab_w,
            y + shift + cab_l,
            body_top,
            roof,
            C.CAR,
            Material.CAR_CABIN,
            colour,
            params,
        )


def _person(b: PrimitiveBuilder, rng, x: float, y: float) -> None:
    scale = rng.uniform(0.88, 1.1)
    trousers = tuple(float(v) for v in CLOTH_COLOURS[rng.integers(len(CLOTH_COLOURS))])
    shirt = tuple(float(v) for v in CLOTH_COLOURS[rng.integers(len(CLOTH_COLOURS))])
    skin = tuple(float(v) for v in np.array([0.85, 0.65, 0.5]) * rng.uniform(0.45, 1.0))
    b.cylinder(x, y, 0.15 * scale, 0.0, 0.85 * scale, C.PERSON, Material.CLOTH, trousers)
    b.cylinder(x, y, 0.21 * scale, 0.85 * scale, 1.45 * scale, C.PERSON, Material.CLOTH, shirt)
    b.ellipsoid(x, y, 1.6 * scale, 0.11 * scale, 0.13 * scale, C.PERSON, Material.CLOTH, skin)
