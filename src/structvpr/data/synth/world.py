"""The procedural town: a street grid, blocks of buildings and gardens, street furniture, places.

Streets run along x (east) and y (north). Places (camera positions) lie on the right-hand lane of
the inner streets; the train, val and test splits take places from disjoint x-ranges separated by
more than `SPLIT_GAP_M`, so no query of one split has a positive in another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from structvpr.data.synth import classes as C
from structvpr.data.synth import objects
from structvpr.data.synth.primitives import PrimitiveBuilder, Primitives

ROAD_HALF_WIDTH_M = 5.0
SIDEWALK_WIDTH_M = 3.5
LANE_OFFSET_M = 1.75
SPLIT_GAP_M = 50.0
SPLITS = ("train", "val", "test")
_INTERSECTION_CLEARANCE_M = 12.0


@dataclass(frozen=True)
class Place:
    """A camera place: position (metres), yaw (radians, counter-clockwise from east), split."""

    place_id: int
    split: str
    x: float
    y: float
    yaw: float
    street_axis: int  # 0 = the street runs along x, 1 = along y


@dataclass
class Town:
    """Everything static: streets, objects, ground patches, lamps, and the places to visit."""

    seed: int
    streets_x: np.ndarray  # float64 [Nx] x of north-south street centrelines (sorted)
    streets_y: np.ndarray  # float64 [Ny] y of east-west street centrelines (sorted)
    static: Primitives
    patches: np.ndarray  # float64 [P, 5]: x0, y0, x1, y1, trainId of paved/parking ground
    lamps: np.ndarray  # float64 [L, 3]: lamp head positions (light sources at night)
    places: list[Place]


def split_counts(num_places: int, fractions: tuple[float, float, float]) -> list[int]:
    """Places per split (largest remainder); every split gets >= 1 place when num_places >= 3."""
    weights = np.asarray(fractions, dtype=np.float64)
    if num_places < 1 or weights.min() < 0 or weights.sum() <= 0:
        raise ValueError(f"need >= 1 place and non-negative split fractions, got {num_places}, {fractions}")
    raw = weights / weights.sum() * num_places
    counts = np.floor(raw).astype(int)
    for index in np.argsort(-(raw - counts))[: num_places - counts.sum()]:
        counts[index] += 1
    if num_places >= 3:
        while counts.min() == 0:
            counts[np.argmin(counts)] += 1
            counts[np.argmax(counts)] -= 1
    return [int(c) for c in counts]


def _street_positions(
    rng: np.random.Generator, start: float, count: int, step: tuple[float, float] = (50.0, 80.0)
) -> np.ndarray:
    return start + np.concatenate([[0.0], np.cumsum(rng.uniform(*step, size=count - 1))])


def _candidate_places(streets_x, inner_y, direction_x, direction_y, spacing):
    """(x, y, yaw, axis) of every possible place, sorted by x."""
    candidates = []

    def along(a0: float, a1: float) -> np.ndarray:
        a0, a1 = a0 + _INTERSECTION_CLEARANCE_M, a1 - _INTERSECTION_CLEARANCE_M
        count = max(1, round((a1 - a0) / spacing) + 1)
        return np.linspace(a0, a1, count) if count > 1 else np.array([(a0 + a1) / 2])

    for i in range(len(streets_x) - 1):
        for j, y in enumerate(inner_y):
            sign = direction_y[j]
            for x in along(streets_x[i], streets_x[i + 1]):
                candidates.append((x, y - sign * LANE_OFFSET_M, 0.0 if sign > 0 else math.pi, 0))
        sign = direction_x[i]
        for j in range(len(inner_y) - 1):
            for y in along(inner_y[j], inner_y[j + 1]):
                candidates.append(
                    (streets_x[i] + sign * LANE_OFFSET_M, y, math.pi / 2 if sign > 0 else -math.pi / 2, 1)
                )
    candidates.sort(key=lambda c: (round(c[0], 3), c[1]))
    return candidates


def _assign_splits(candidates: list[tuple[float, float, float, int]], counts: list[int]) -> list[Place] | None:
    places: list[Place] = []
    min_x, index = -math.inf, 0
    for split, count in zip(SPLITS, counts, strict=True):
        taken = 0
        while taken < count and index < len(candidates):
            x, y, yaw, axis = candidates[index]
            index += 1
            if x <= min_x:
                continue
            places.append(Place(len(places), split, float(x), float(y), float(yaw), int(axis)))
            taken += 1
        if taken < count:
            return None
        if taken:
            min_x = places[-1].x + SPLIT_GAP_M
    return places


def build_town(
    num_places: int,
    seed: int,
    split_fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
    place_spacing_m: float = 14.0,
) -> Town:
    """Generate a town with `num_places` places split into train/val/test by x-range."""
    rng = np.random.default_rng([seed, 1])
    counts = split_counts(num_places, split_fractions)
    streets_y = _street_positions(rng, 100.0, 5)  # start at 100 m: coordinates stay positive
    inner_y = streets_y[1:4]
    direction_y = rng.choice([-1, 1], size=len(inner_y))
    num_columns = 2
    while True:  # grow the grid eastwards until every split has its places
        col_rng = np.random.default_rng([seed, 2])
        streets_x = _street_positions(col_rng, 165.0, num_columns + 1)
        direction_x = col_rng.choice([-1, 1], size=len(streets_x))
        places = _assign_splits(
            _candidate_places(streets_x, inner_y, direction_x, direction_y, place_spacing_m), counts
        )
        if places is not None:
            break
        num_columns += 1
    # Backdrop: one more street beyond each end so edge places see buildings on both sides.
    last_needed = int(np.searchsorted(streets_x, max(p.x for p in places)))
    streets_x = streets_x[: last_needed + 1]
    streets_x = np.concatenate([[streets_x[0] - 65.0], streets_x, [streets_x[-1] + 65.0]])
    builder = PrimitiveBuilder()
    patches: list[tuple] = []
    lamps: list[tuple] = []
    world_rng = np.random.default_rng([seed, 3])
    for i in range(len(streets_x) - 1):
        for j in range(len(streets_y) - 1):
            _fill_block(builder, world_rng, streets_x[i], streets_y[j], streets_x[i + 1], streets_y[j + 1], patches)
    _street_furniture(builder, world_rng, streets_x, streets_y, lamps)
    return Town(
        seed=seed,
        streets_x=streets_x,
        streets_y=streets_y,
        static=builder.build(),
        patches=np.asarray(patches, dtype=np.float64).reshape(-1, 5),
        lamps=np.asarray(lamps, dtype=np.float64).reshape(-1, 3),
        places=places,
    )


def _fill_block(b, rng, sx0, sy0, sx1, sy1, patches) -> None:
    """Buildings and gardens along the four sides of the block between four street centrelines."""
    inset = ROAD_HALF_WIDTH_M + SIDEWALK_WIDTH_M
    x0, y0, x1, y1 = sx0 + inset, sy0 + inset, sx1 - inset, sy1 - inset
    corner = min(12.0, (y1 - y0) / 2 - 1.0)
    # (side start, side end, front line, inward sign, axis of the side)
    sides = [
        (x0, x1, y0, +1, 0),
        (x0, x1, y1, -1, 0),
        (y0 + corner, y1 - corner, x0, +1, 1),
        (y0 + corner, y1 - corner, x1, -1, 1),
    ]
    for a0, a1, front, inward, axis in sides:
        max_depth = corner if axis == 0 else min(16.0, (x1 - x0) / 2 - 1.0)
        a = a0
        while a1 - a > 4.0:
            width = min(rng.uniform(8.0, 22.0), a1 - a)
            if a1 - (a + width) < 6.0:
                width = a1 - a
            _fill_lot(b, rng, a, a + width, front, inward, axis, max_depth, patches)
            a += width


def _rect(
    axis: int, a0: float, a1: float, front: float, inward: float, d0: float, d1: float
) -> tuple[float, float, float, float]:
    """Side-frame rectangle (along a0..a1, depth d0..d1 from the front line) -> x0, y0, x1, y1."""
    f0, f1 = front + inward * d0, front + inward * d1
    return (a0, min(f0, f1), a1, max(f0, f1)) if axis == 0 else (min(f0, f1), a0, max(f0, f1), a1)


def _fill_lot(b, rng, a0, a1, front, inward, axis, max_depth, patches) -> None:
    kind = rng.choice(["building", "garden", "plaza", "parking"], p=[0.68, 0.17, 0.08, 0.07])
    if kind == "building":
        gap = 0.0 if rng.random() < 0.5 else rng.uniform(0.5, 3.0)
        setback = 0.0 if rng.random() < 0.6 else rng.uniform(1.0, 3.5)
        depth = rng.uniform(8.0, max(8.5, max_depth))
        objects.building(
            b, rng, *_rect(axis, a0 + gap / 2, a1 - gap / 2, front, inward, setback, min(max_depth, setback + depth))
        )
        if setback > 1.5 and rng.random() < 0.5:
            objects.barrier(
                b, rng, *_rect(axis, a0, a1, front, inward, 0.2, 0.8), str(rng.choice(["hedge", "fence", "wall"]))
            )
        return
    if kind == "garden":
        objects.barrier(
            b,
            rng,
            *_rect(axis, a0, a1, front, inward, 0.2, 0.8),
            str(rng.choice(["hedge", "fence", "wall"], p=[0.45, 0.3, 0.25])),
        )
        for _ in range(int(rng.integers(1, 4))):
            cx, cy, _, _ = _rect(
                axis,
                rng.uniform(a0 + 2, max(a0 + 2.1, a1 - 2)),
                0,
                front,
                inward,
                rng.uniform(4.0, max(4.5, max_depth - 2)),
                0,
            )
            objects.tree(b, rng, cx, cy, scale=rng.uniform(0.9, 1.4))
        return
    ground = C.SIDEWALK if kind == "plaza" else C.ROAD
    patches.append((*_rect(axis, a0, a1, front, inward, 0.0, max_depth), ground))
    if kind == "parking" and rng.random() < 0.6:
        objects.barrier(b, rng, *_rect(axis, a0, a1, front, inward, 0.1, 0.4), "wall")
    elif kind == "plaza" and rng.random() < 0.7:
        cx, cy, _, _ = _rect(axis, (a0 + a1) / 2, 0, front, inward, max_depth / 2, 0)
        objects.tree(b, rng, cx, cy, scale=1.2)


def _street_furniture(b, rng, streets_x, streets_y, lamps) -> None:
    """Lamps, street trees and signs along every sidewalk; traffic lights at some crossings."""
    kerb = ROAD_HALF_WIDTH_M
    for axis, lines, cross in ((0, streets_y, streets_x), (1, streets_x, streets_y)):
        for centre in lines:
            lamp_height = rng.uniform(5.5, 8.5)
            lamp_colour = tuple(rng.choice([[0.25, 0.25, 0.27], [0.5, 0.5, 0.5], [0.15, 0.25, 0.18]]))
            lamp_step = rng.uniform(20.0, 32.0)
            for side in (-1, 1):
                has_trees = rng.random() < 0.45
                tree_step = rng.uniform(7.0, 14.0)
                for k in range(len(cross) - 1):
                    a0 = cross[k] + kerb + SIDEWALK_WIDTH_M + 1.0
                    a1 = cross[k + 1] - kerb - SIDEWALK_WIDTH_M - 1.0
                    lamp_at = np.arange(a0 + rng.uniform(0, lamp_step / 2), a1, lamp_step)
                    lateral = centre + side * (kerb + 0.4)
                    for a in lamp_at:
                        x, y = (a, lateral) if axis == 0 else (lateral, a)
                        toward = (0.0, -side) if axis == 0 else (-side, 0.0)
                        lamps.append(objects.street_lamp(b, x, y, lamp_height, toward, lamp_colour))
                    if has_trees:
                        for a in np.arange(a0 + rng.uniform(0, tree_step), a1, tree_step):
                            if np.min(np.abs(lamp_at - a), initial=99.0) < 2.5:
                                continue
                            lat = centre + side * (kerb + SIDEWALK_WIDTH_M * 0.5)
                            x, y = (a, lat) if axis == 0 else (lat, a)
                            objects.tree(b, rng, x, y, scale=rng.uniform(0.75, 1.05))
                    for _ in range(rng.poisson(0.9)):
                        a = rng.uniform(a0, a1)
                        lat = centre + side * (kerb + 0.3)
                        x, y = (a, lat) if axis == 0 else (lat, a)
                        objects.traffic_sign(b, rng, x, y, axis)
    for x in streets_x:
        for y in streets_y:
            if rng.random() < 0.55:
                corner = ROAD_HALF_WIDTH_M + 0.5
                for sx, sy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
                    if rng.random() < 0.7:
                        objects.traffic_light(b, rng, x + sx * corner, y + sy * corner)
