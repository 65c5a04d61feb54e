"""Render one frame: ray cast, exact labels, then shading under a condition.

Labels and colours come from the same per-pixel hit buffer, so they align exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from structvpr.data.synth import classes as C
from structvpr.data.synth.camera import Camera
from structvpr.data.synth.conditions import AppearanceShift, Condition
from structvpr.data.synth.materials import WARM_LIGHT, object_colours
from structvpr.data.synth.primitives import Primitives
from structvpr.data.synth.raycast import (
    FACE_CURVED,
    FACE_HORIZONTAL,
    FACE_X,
    FACE_Y,
    cast,
    cull,
)
from structvpr.data.synth.textures import ground_albedo, ground_class
from structvpr.data.synth.world import Town


@dataclass
class Frame:
    """One rendered view: uint8 RGB [H, W, 3] and uint8 Cityscapes trainIds [H, W]."""

    rgb: np.ndarray
    labels: np.ndarray
    camera: Camera
    depth: np.ndarray  # float32 [H, W] camera depth in metres (inf = sky)


def visible_primitives(town: Town, dynamic: Primitives, camera: Camera) -> Primitives:
    """Static and dynamic primitives that may be seen from `camera`."""
    return Primitives.concatenate(
        [town.static.subset(cull(town.static, camera)), dynamic.subset(cull(dynamic, camera))]
    )


def render_frame(
    town: Town, camera: Camera, condition: Condition, dynamic: Primitives, rng: np.random.Generator
) -> Frame:
    """Render `town` plus `dynamic` objects from `camera` under `condition`.

    `rng` only drives the appearance shift, sensor noise and rain; the labels do not depend on it.
    """
    height, width = camera.image_size
    prims = visible_primitives(town, dynamic, camera)
    hits = cast(prims, camera)
    labels = np.full((height, width), C.SKY, dtype=np.uint8)
    albedo = np.zeros((height, width, 3), dtype=np.float32)
    emission = np.zeros((height, width, 3), dtype=np.float32)
    light = np.zeros((height, width), dtype=np.float32)
    sky = _sky_colours(camera, condition)  # [H, 3]
    sky_image = np.broadcast_to(sky[:, None, :], (height, width, 3))

    ground = hits.is_ground
    gx, gy = hits.ground_x[ground], hits.ground_y[ground]
    ground_labels = ground_class(town, gx, gy)
    labels[ground] = ground_labels
    albedo[ground] = ground_albedo(town, gx, gy, ground_labels, condition.snow, condition.rain)
    if condition.rain:  # wet ground mirrors the sky a little
        albedo[ground] += 0.25 * sky_image[ground] * (ground_labels != C.TERRAIN)[:, None]
    light[ground] = condition.ambient + condition.sun * 0.8

    rows, cols = np.nonzero(hits.prim >= 0)
    m = hits.prim[rows, cols]
    labels[rows, cols] = prims.class_id[m]
    face = hits.face[rows, cols]
    obj_albedo, obj_emission = object_colours(
        prims, m, face, hits.u[rows, cols], hits.z[rows, cols], sky[rows], (camera.x, camera.y), condition
    )
    albedo[rows, cols] = obj_albedo
    emission[rows, cols] = obj_emission
    light[rows, cols] = condition.ambient + condition.sun * _lambert(camera, condition, face, cols, hits.u[rows, cols])
    colour = albedo * (light[..., None] * np.asarray(condition.tint, dtype=np.float32))
    if condition.lamps > 0:
        colour += albedo * _lamp_light(town, camera, hits, condition)[..., None]
    colour += emission
    sky_mask = hits.is_sky
    colour[sky_mask] = sky_image[sky_mask]
    colour = _fog(colour, hits.depth, condition, sky_image)
    if condition.lamps > 0:
        colour += _lamp_glow(town, camera, hits.depth, condition)
    if condition.rain:
        colour = _rain_streaks(colour, rng)
    rgb = _camera_response(colour, condition, rng)
    return Frame(rgb=rgb, labels=labels, camera=camera, depth=hits.depth)


def _sky_colours(camera: Camera, condition: Condition) -> np.ndarray:
    """float32 [H, 3]: sky colour per image row (horizon to zenith by elevation angle)."""
    _, cy = camera.principal_point
    elevation = np.arctan((cy - np.arange(camera.image_size[0])) / camera.focal)
    mix = np.clip(elevation / 0.7, 0.0, 1.0)[:, None] ** 0.6
    zenith = np.asarray(condition.sky_zenith, dtype=np.float32)
    horizon = np.asarray(condition.sky_horizon, dtype=np.float32)
    return (horizon * (1 - mix) + zenith * mix).astype(np.float32)


def _lambert(camera: Camera, condition: Condition, face, cols, u) -> np.ndarray:
    """Diffuse factor in [0, 1] of each object pixel for a light from the condition's azimuth."""
    azimuth = math.radians(condition.sun_azimuth_deg)
    sun_x, sun_y = math.cos(azimuth), math.sin(azimuth)
    dx, dy = camera.column_directions()
    facing_x = np.maximum(0.0, -np.sign(dx[cols]) * sun_x)  # x-faces look back at the camera
    facing_y = np.maximum(0.0, -np.sign(dy[cols]) * sun_y)
    right_x, right_y = math.sin(camera.yaw), -math.cos(camera.yaw)
    curved = 0.55 + 0.45 * u * (right_x * sun_x + right_y * sun_y)
    out = np.select(
        [face == FACE_X, face == FACE_Y, face == FACE_HORIZONTAL, face == FACE_CURVED],
        [0.25 + 0.75 * facing_x, 0.25 + 0.75 * facing_y, np.ones_like(u), curved],
    )
    return out.astype(np.float32)


def _world_points(camera: Camera, depth: np.ndarray):
    dx, dy = camera.column_directions()
    finite = np.where(np.isfinite(depth), depth, 0.0)
    return camera.x + finite * dx[None, :], camera.y + finite * dy[None, :]


def _visible_lamps(town: Town, camera: Camera, count: int = 10) -> np.ndarray:
    """The `count` nearest lamp heads in front of the camera, float64 [L, 3]."""
    if len(town.lamps) == 0:
        return town.lamps
    rel = town.lamps[:, :2] - (camera.x, camera.y)
    forward = rel @ np.array([math.cos(camera.yaw), math.sin(camera.yaw)])
    distance = np.hypot(rel[:, 0], rel[:, 1])
    usable = np.nonzero((forward > -15.0) & (distance < 90.0))[0]
    return town.lamps[usable[np.argsort(distance[usable], kind="stable")[:count]]]


def _lamp_light(town: Town, camera: Camera, hits, condition: Condition) -> np.ndarray:
    """float32 [H, W]: light from street lamps (pools on the ground and nearby facades)."""
    lamps = _visible_lamps(town, camera)
    total = np.zeros(hits.depth.shape, dtype=np.float32)
    x, y = _world_points(camera, hits.depth)
    z = np.where(hits.prim >= 0, hits.z, 0.0)
    for lx, ly, lz in lamps:
        d2 = (x - lx) ** 2 + (y - ly) ** 2 + 0.4 * (z - lz) ** 2
        total += (1.3 * np.exp(-d2 / 60.0)).astype(np.float32)
    return total * condition.lamps * WARM_LIGHT.mean()


def _lamp_glow(town: Town, camera: Camera, depth: np.ndarray, condition: Condition) -> np.ndarray:
    """float32 [H, W, 3]: halo around lamp heads that are not hidden."""
    height, width = depth.shape
    glow = np.zeros((height, width), dtype=np.float32)
    cx, cy = camera.principal_point
    fwd = np.array([math.cos(camera.yaw), math.sin(camera.yaw)])
    right = np.array([math.sin(camera.yaw), -math.cos(camera.yaw)])
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    for lamp in _visible_lamps(town, camera):
        rel = lamp[:2] - (camera.x, camera.y)
        t = float(rel @ fwd)
        if t < 1.0:
            continue
        col = cx + camera.focal * float(rel @ right) / t
        row = cy - camera.focal * (lamp[2] - camera.height) / t
        r, c = round(row), round(col)
        if not (0 <= r < height and 0 <= c < width) or depth[r, c] < t - 1.5:
            continue
        sigma = max(1.2, camera.focal * 0.5 / t)
        reach = int(3 * sigma) + 1  # the halo is negligible beyond 3 sigma
        r0, r1 = max(0, r - reach), min(height, r + reach + 1)
        c0, c1 = max(0, c - reach), min(width, c + reach + 1)
        glow[r0:r1, c0:c1] += np.exp(-((rows[r0:r1] - row) ** 2 + (cols[:, c0:c1] - col) ** 2) / (2 * sigma * sigma))
    return glow[..., None] * WARM_LIGHT * (0.9 * condition.lamps)


def _fog(colour: np.ndarray, depth: np.ndarray, condition: Condition, sky_image) -> np.ndarray:
    fog = np.asarray(condition.fog_colour, dtype=np.float32) if condition.fog_colour is not None else sky_image[-1, 0]
    finite = np.isfinite(depth)
    # The sky already has the condition's colour; only surfaces fade with distance.
    keep = np.where(finite, np.exp(-np.where(finite, depth, 0.0) / condition.haze_m), 1.0)
    keep = keep.astype(np.float32)[..., None]
    return colour * keep + fog * (1 - keep)


def _rain_streaks(colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright slanted streaks (drops close to the lens) and a slight overall veil."""
    height, width = colour.shape[:2]
    count = int(height * width / 120)
    length = max(3, height // 12)
    start_r = rng.integers(-length, height, count)
    start_c = rng.integers(0, width, count)
    streaks = np.zeros((height, width), dtype=np.float32)
    for step in range(length):
        r, c = start_r + step, start_c + step // 4
        ok = (r >= 0) & (r < height) & (c < width)
        np.add.at(streaks, (r[ok], c[ok]), 0.07)
    return colour * 0.92 + 0.06 + streaks[..., None]


def _camera_response(colour: np.ndarray, condition: Condition, rng: np.random.Generator) -> np.ndarray:
    """Gain, white balance, gamma (via a lookup table on 1/1024 steps) and sensor noise -> uint8."""
    shift = AppearanceShift.draw(condition, rng)
    colour = colour * (shift.gain * np.asarray(shift.white_balance, dtype=np.float32))
    levels = (np.clip(colour, 0.0, 1.0) * 1023.0 + 0.5).astype(np.int16)
    curve = (np.linspace(0.0, 1.0, 1024, dtype=np.float32) ** np.float32(shift.gamma)) * 255.0
    noise = rng.standard_normal(colour.shape, dtype=np.float32) * np.float32(condition.noise_sigma * 255)
    return (np.clip(curve[levels] + noise, 0.0, 255.0) + 0.5).astype(np.uint8)
