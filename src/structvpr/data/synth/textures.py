"""Procedural textures: hash noise, ground classes and ground appearance (world-anchored).

Textures are functions of world coordinates and object keys only, so a surface looks the same
from every pose and every visit; only lighting and weather change between conditions.
"""

from __future__ import annotations

import numpy as np

from structvpr.data.synth import classes as C
from structvpr.data.synth.world import ROAD_HALF_WIDTH_M, SIDEWALK_WIDTH_M, Town

_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9)


def hash01(a: np.ndarray, b: np.ndarray, key: np.ndarray | int = 0) -> np.ndarray:
    """Deterministic pseudo-random float32 in [0, 1) per integer triple (broadcasting)."""
    with np.errstate(over="ignore"):
        h = (
            np.asarray(a).astype(np.int64).astype(np.uint64) * _M1
            ^ np.asarray(b).astype(np.int64).astype(np.uint64) * _M2
            ^ np.asarray(key).astype(np.int64).astype(np.uint64) * _M3
        )
        h ^= h >> np.uint64(29)
        h *= _M1
        h ^= h >> np.uint64(32)
    return (h & np.uint64(0xFFFFFF)).astype(np.float32) / np.float32(1 << 24)


def value_noise(x: np.ndarray, y: np.ndarray, cell: float, key: np.ndarray | int = 0) -> np.ndarray:
    """Bilinearly interpolated lattice noise in [0, 1) with lattice spacing `cell` (same units)."""
    gx, gy = x / cell, y / cell
    ix, iy = np.floor(gx), np.floor(gy)
    fx, fy = (gx - ix).astype(np.float32), (gy - iy).astype(np.float32)
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    n00, n10 = hash01(ix, iy, key), hash01(ix + 1, iy, key)
    n01, n11 = hash01(ix, iy + 1, key), hash01(ix + 1, iy + 1, key)
    return (n00 * (1 - fx) + n10 * fx) * (1 - fy) + (n01 * (1 - fx) + n11 * fx) * fy


def _distance_to_lines(values: np.ndarray, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each value to the nearest line coordinate, and that line's index."""
    index = np.searchsorted(lines, values)
    lo = np.clip(index - 1, 0, len(lines) - 1)
    hi = np.clip(index, 0, len(lines) - 1)
    d_lo, d_hi = np.abs(values - lines[lo]), np.abs(values - lines[hi])
    return np.minimum(d_lo, d_hi), np.where(d_lo <= d_hi, lo, hi)


def ground_class(town: Town, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """uint8 trainIds of the ground at world points: road, sidewalk, or terrain / patch class."""
    dist_x, _ = _distance_to_lines(x, town.streets_x)
    dist_y, _ = _distance_to_lines(y, town.streets_y)
    near = np.minimum(dist_x, dist_y)
    labels = np.full(x.shape, C.TERRAIN, dtype=np.uint8)
    labels[near < ROAD_HALF_WIDTH_M + SIDEWALK_WIDTH_M] = C.SIDEWALK
    labels[near < ROAD_HALF_WIDTH_M] = C.ROAD
    if len(town.patches) and x.size:
        lo_x, hi_x, lo_y, hi_y = x.min(), x.max(), y.min(), y.max()
        p = town.patches
        nearby = (p[:, 2] >= lo_x) & (p[:, 0] <= hi_x) & (p[:, 3] >= lo_y) & (p[:, 1] <= hi_y)
        terrain = labels == C.TERRAIN
        for x0, y0, x1, y1, cls in p[nearby]:
            labels[terrain & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)] = int(cls)
    return labels


def ground_albedo(town: Town, x: np.ndarray, y: np.ndarray, labels: np.ndarray, snow: bool, wet: bool) -> np.ndarray:
    """float32 [N, 3] colour of ground points (1-D arrays x, y, labels of length N)."""
    dist_x, _ = _distance_to_lines(x, town.streets_x)
    dist_y, _ = _distance_to_lines(y, town.streets_y)
    grain = value_noise(x, y, 0.7, 11) * 0.6 + hash01(np.floor(x * 6), np.floor(y * 6), 12) * 0.4
    colour = np.empty((*x.shape, 3), dtype=np.float32)
    road, walk, terrain = labels == C.ROAD, labels == C.SIDEWALK, labels == C.TERRAIN
    colour[road] = (0.27, 0.27, 0.29)
    colour[road] *= (0.85 + 0.3 * grain[road])[:, None]
    tiles = (np.abs(((x + 0.02) % 0.6) - 0.3) > 0.27) | (np.abs(((y + 0.02) % 0.6) - 0.3) > 0.27)
    colour[walk] = (0.62, 0.60, 0.57)
    colour[walk] *= (0.9 + 0.15 * grain[walk] - 0.18 * tiles[walk])[:, None]
    patchy = value_noise(x, y, 3.0, 13)
    colour[terrain] = np.stack([0.22 + 0.12 * patchy, 0.36 + 0.08 * grain, 0.13 + 0.04 * patchy], axis=-1)[terrain]
    # Lane markings: dashed centre line (away from crossings) and zebra crossings.
    on_x_street, on_y_street = dist_y < ROAD_HALF_WIDTH_M, dist_x < ROAD_HALF_WIDTH_M
    away = ROAD_HALF_WIDTH_M + SIDEWALK_WIDTH_M
    dashes = (on_x_street & (dist_y < 0.08) & (dist_x > away) & (x % 6.0 < 3.0)) | (
        on_y_street & (dist_x < 0.08) & (dist_y > away) & (y % 6.0 < 3.0)
    )
    zebra = (on_x_street & (dist_x > away) & (dist_x < away + 3.0) & (y % 1.0 < 0.5)) | (
        on_y_street & (dist_y > away) & (dist_y < away + 3.0) & (x % 1.0 < 0.5)
    )
    colour[road & (dashes | zebra)] = 0.82
    if snow:
        white = np.array([0.93, 0.94, 0.97], dtype=np.float32) * (0.93 + 0.07 * grain)[:, None]
        lane = np.where(on_x_street, dist_y, dist_x)
        tracks = road & (np.abs(np.abs(lane - 1.75) - 0.8) < 0.35)
        cover = np.where(terrain | walk, 0.95, np.where(tracks, 0.15, 0.7)).astype(np.float32)
        cover *= np.clip(0.75 + 0.5 * patchy, 0, 1)
        colour = colour * (1 - cover[:, None]) + white * cover[:, None]
    if wet:
        colour[road | walk] *= 0.6
    return colour
