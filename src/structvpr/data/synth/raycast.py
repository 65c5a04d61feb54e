"""Vectorised numpy ray caster, column by column.

With zero roll and pitch every image column is a vertical plane through the camera, so each
primitive covers one contiguous run of rows in each column it meets. We intersect every column's
2D ray with every primitive footprint at once ([M, W] arrays), turn the hits into row spans, sort
them by depth and fill each pixel with the nearest span that covers it. Along one column ray the
footprints are met in order of entry distance, so this nearest-first fill is an exact z-buffer for
non-overlapping vertical prisms (and a good approximation for crowns over trunks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from structvpr.data.synth.camera import Camera
from structvpr.data.synth.primitives import BOX, CYLINDER, ELLIPSOID, Primitives

NEAR_M = 0.3
FAR_M = 250.0
FACE_X, FACE_Y, FACE_HORIZONTAL, FACE_CURVED = 0, 1, 2, 3


@dataclass
class Hits:
    """Per-pixel result of one cast; arrays are [H, W].

    prim int32: index into the primitives that were cast, -1 for ground or sky.
    depth float32: camera depth in metres (inf for sky). face int8: FACE_* of the hit surface.
    u float32: horizontal coordinate along a flat face (world metres) or, for curved surfaces, the
    signed lateral offset from the axis as a fraction of the radius. z float32: world height.
    ground_x, ground_y float32: world position of the ground seen at each pixel below the horizon.
    """

    prim: np.ndarray
    depth: np.ndarray
    face: np.ndarray
    u: np.ndarray
    z: np.ndarray
    ground_x: np.ndarray
    ground_y: np.ndarray

    @property
    def is_sky(self) -> np.ndarray:
        return (self.prim < 0) & ~np.isfinite(self.depth)

    @property
    def is_ground(self) -> np.ndarray:
        return (self.prim < 0) & np.isfinite(self.depth)


def cull(prims: Primitives, camera: Camera, far_m: float = FAR_M) -> np.ndarray:
    """Boolean [M]: primitives whose bounding circle may be inside the horizontal view wedge."""
    cx, cy, radius = prims.bounds_2d()
    fx, fy = math.cos(camera.yaw), math.sin(camera.yaw)
    rel_x, rel_y = cx - camera.x, cy - camera.y
    forward = rel_x * fx + rel_y * fy
    lateral = np.abs(rel_x * fy - rel_y * fx)
    half = math.radians(camera.hfov_deg) / 2 + 0.02
    outside_wedge = lateral * math.cos(half) - forward * math.sin(half) > radius
    return (forward + radius > NEAR_M) & (forward - radius < far_m) & ~outside_wedge


def _boxes(g, px, py, dx, dy):
    """Slab test of box footprints: tn, tf [M, W], face [M, W], u [M, W]."""
    safe_dx = np.where(np.abs(dx) < 1e-12, 1e-12, dx)
    safe_dy = np.where(np.abs(dy) < 1e-12, 1e-12, dy)
    tx0 = (g[:, 0:1] - px) / safe_dx
    tx1 = (g[:, 2:3] - px) / safe_dx
    ty0 = (g[:, 1:2] - py) / safe_dy
    ty1 = (g[:, 3:4] - py) / safe_dy
    txn, txf = np.minimum(tx0, tx1), np.maximum(tx0, tx1)
    tyn, tyf = np.minimum(ty0, ty1), np.maximum(ty0, ty1)
    tn, tf = np.maximum(txn, tyn), np.minimum(txf, tyf)
    x_face = txn > tyn
    u = np.where(x_face, py + tn * dy, px + tn * dx)
    return tn, tf, np.where(x_face, FACE_X, FACE_Y).astype(np.int8), u, tf > tn


def _circles(cx, cy, radius, px, py, dx, dy):
    """Ray-circle footprint test: tn, tf, signed lateral offset / radius, hit; all [M, W]."""
    ox, oy = (px - cx)[:, None], (py - cy)[:, None]
    a = dx * dx + dy * dy
    b = 2.0 * (dx * ox + dy * oy)
    c = ox * ox + oy * oy - (radius * radius)[:, None]
    disc = b * b - 4.0 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    tn, tf = (-b - root) / (2 * a), (-b + root) / (2 * a)
    across = (dx * (-oy) - dy * (-ox)) / (np.sqrt(a) * radius[:, None])
    return tn, tf, np.clip(across, -1.0, 1.0), disc > 0


def cast(prims: Primitives, camera: Camera) -> Hits:
    """Render the per-pixel geometry of `prims` (already culled or not) seen from `camera`."""
    height, width = camera.image_size
    f = camera.focal
    _, cy = camera.principal_point
    h, px, py = camera.height, camera.x, camera.y
    dx, dy = camera.column_directions()
    count = len(prims)
    g, shape = prims.geom, prims.shape
    tn = np.full((count, width), np.inf)
    tf = np.full((count, width), np.inf)
    face = np.full((count, width), FACE_CURVED, dtype=np.int8)
    u = np.zeros((count, width))
    top = np.zeros((count, width))
    bottom = np.zeros((count, width))

    prism = shape != ELLIPSOID
    for kind in (BOX, CYLINDER):
        rows = np.nonzero(shape == kind)[0]
        if len(rows) == 0:
            continue
        if kind == BOX:
            a, b, fc, uu, hit = _boxes(g[rows], px, py, dx, dy)
            face[rows] = fc
        else:
            a, b, uu, hit = _circles(g[rows, 0], g[rows, 1], g[rows, 2], px, py, dx, dy)
        hit &= a > NEAR_M
        tn[rows] = np.where(hit, a, np.inf)
        tf[rows] = np.where(hit, b, np.inf)
        u[rows] = uu
    if prism.any():
        rows = np.nonzero(prism)[0]
        z0, z1 = g[rows, 4:5], g[rows, 5:6]
        a, b = tn[rows], tf[rows]
        with np.errstate(invalid="ignore"):
            top[rows] = cy - f * (z1 - h) / np.where(z1 >= h, a, b)
            bottom[rows] = cy - f * (z0 - h) / np.where(z0 <= h, a, b)
    rows = np.nonzero(shape == ELLIPSOID)[0]
    if len(rows):
        e = g[rows]
        a, b, across, hit = _circles(e[:, 0], e[:, 1], e[:, 2], px, py, dx, dy)
        hit &= a > NEAR_M
        t_centre, half_t = 0.5 * (a + b), np.maximum(0.5 * (b - a), 1e-9)
        half_z = e[:, 3:4] * np.sqrt(np.maximum(1.0 - across * across, 1e-9))
        big_t = -t_centre / half_t
        big_z = (h - e[:, 4:5]) / half_z
        with np.errstate(invalid="ignore"):
            root = np.sqrt(np.maximum(big_t * big_t + big_z * big_z - 1.0, 0.0))
            denom = np.where(hit, big_t * big_t - 1.0, 1.0)
            slope_a = (big_t * big_z + root) / denom * half_z / half_t
            slope_b = (big_t * big_z - root) / denom * half_z / half_t
        rows_a, rows_b = cy - f * slope_a, cy - f * slope_b
        tn[rows] = np.where(hit, a, np.inf)
        top[rows] = np.minimum(rows_a, rows_b)
        bottom[rows] = np.maximum(rows_a, rows_b)
        u[rows] = across

    prim = _fill_nearest(tn, top, bottom, prism & (g[:, 4] <= 0.0), height)
    return _per_pixel(prims, camera, prim, tn, face, u)


def _fill_nearest(tn, top, bottom, grounded_prism, height) -> np.ndarray:
    """int32 [H, W]: index of the nearest primitive whose row span covers each pixel, or -1."""
    width = tn.shape[1]
    prim = np.full((height, width), -1, dtype=np.int32)
    hit_any = np.isfinite(tn).any(axis=1)
    candidates = np.nonzero(hit_any)[0]
    if len(candidates) == 0:
        return prim
    tn, top, bottom = tn[candidates], top[candidates], bottom[candidates]
    order = np.argsort(tn, axis=0, kind="stable")
    sorted_tn = np.take_along_axis(tn, order, axis=0)
    sorted_top = np.take_along_axis(top, order, axis=0)
    sorted_bottom = np.take_along_axis(bottom, order, axis=0)
    # A grounded prism reaching above the image hides everything behind it in that column.
    full = grounded_prism[candidates][order] & (sorted_top <= -0.5)
    hits = np.isfinite(sorted_tn)
    first_full = np.where(full.any(axis=0), full.argmax(axis=0), len(candidates))
    layers = np.minimum(hits.sum(axis=0), first_full + 1)
    row_index = np.arange(height, dtype=np.float64)[:, None]
    for k in range(int(layers.max())):
        cols = np.nonzero(layers > k)[0]
        current = prim[:, cols]
        cover = (row_index >= sorted_top[k, cols]) & (row_index < sorted_bottom[k, cols]) & (current < 0)
        prim[:, cols] = np.where(cover, candidates[order[k, cols]], current)
    return prim


def _per_pixel(prims, camera, prim, tn, face, u) -> Hits:
    height, width = camera.image_size
    f = camera.focal
    _, cy = camera.principal_point
    h = camera.height
    dx, dy = camera.column_directions()
    row = np.arange(height, dtype=np.float64)[:, None]
    slope = (cy - row) / f  # dz / d(depth) of each row's ray
    with np.errstate(divide="ignore"):
        ground_depth = np.where(slope < 0, -h / slope, np.inf)
    ground_depth = np.broadcast_to(ground_depth, (height, width))
    depth = ground_depth.astype(np.float32)
    out_face = np.zeros((height, width), dtype=np.int8)
    out_u = np.zeros((height, width), dtype=np.float32)
    out_z = np.zeros((height, width), dtype=np.float32)

    r_idx, c_idx = np.nonzero(prim >= 0)
    m = prim[r_idx, c_idx]
    t = tn[m, c_idx]
    s = slope[r_idx, 0]
    fc = face[m, c_idx]
    z = h + s * t
    g = prims.geom[m]
    is_prism = prims.shape[m] != ELLIPSOID
    above = is_prism & (z > g[:, 5])  # ray passes over the front face: top face
    below = is_prism & (z < g[:, 4])  # bottom face of a floating object
    horizontal = above | below
    z_face = np.where(above, g[:, 5], g[:, 4])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(horizontal, (z_face - h) / s, t)
    z = np.where(horizontal, z_face, z)
    z = np.where(is_prism, z, h + s * t)
    depth[r_idx, c_idx] = t
    out_face[r_idx, c_idx] = np.where(horizontal, FACE_HORIZONTAL, fc)
    out_u[r_idx, c_idx] = u[m, c_idx]
    out_z[r_idx, c_idx] = z
    gdepth = np.where(np.isfinite(ground_depth), ground_depth, 0.0)
    ground_x = (camera.x + gdepth * dx[None, :]).astype(np.float32)
    ground_y = (camera.y + gdepth * dy[None, :]).astype(np.float32)
    return Hits(prim, depth, out_face, out_u, out_z, ground_x, ground_y)
