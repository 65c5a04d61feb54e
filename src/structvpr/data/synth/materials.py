"""Surface colours of primitives: facades with windows, foliage, cars, signals, signs, ...

`object_colours` returns albedo and emitted light for every pixel that shows a primitive;
the lighting model in `render.py` combines them with the condition.
"""

from __future__ import annotations

import numpy as np

from structvpr.data.synth.conditions import Condition
from structvpr.data.synth.primitives import Material, Primitives
from structvpr.data.synth.raycast import FACE_HORIZONTAL, FACE_X
from structvpr.data.synth.textures import hash01, value_noise

GLASS = np.array([[0.14, 0.18, 0.25], [0.28, 0.32, 0.36], [0.08, 0.08, 0.09], [0.30, 0.40, 0.48]], dtype=np.float32)
WARM_LIGHT = np.array([1.0, 0.82, 0.5], dtype=np.float32)
SNOW = np.array([0.93, 0.94, 0.97], dtype=np.float32)
SIGNAL_COLOURS = np.array([[1.0, 0.1, 0.05], [1.0, 0.65, 0.0], [0.1, 1.0, 0.35]], dtype=np.float32)


def object_colours(
    prims: Primitives,
    m: np.ndarray,
    face: np.ndarray,
    u: np.ndarray,
    z: np.ndarray,
    sky: np.ndarray,
    camera_xy: tuple[float, float],
    condition: Condition,
) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and emission, float32 [N, 3] each, for N pixels showing primitives `m` [N].

    face/u/z are the per-pixel `Hits` fields; sky [N, 3] is the sky colour behind each pixel
    (seen through bare branches and reflected by glass).
    """
    count = len(m)
    albedo = prims.colour[m].copy()
    emission = np.zeros((count, 3), dtype=np.float32)
    material, g, p, key = prims.material[m], prims.geom[m], prims.params[m], prims.key[m]
    top = face == FACE_HORIZONTAL
    for kind in np.unique(material):
        sel = np.nonzero(material == kind)[0]
        args = (albedo, emission, sel, g[sel], p[sel], key[sel], face[sel], u[sel], z[sel], sky[sel], condition)
        if kind == Material.FACADE:
            _facade(*args)
        elif kind == Material.FOLIAGE:
            _foliage(*args)
        elif kind == Material.CAR_BODY or kind == Material.CAR_CABIN:
            _car(*args, camera_xy=camera_xy, cabin=kind == Material.CAR_CABIN)
        elif kind == Material.SIGNAL:
            _signal(*args)
        elif kind == Material.SIGN:
            _sign(*args)
        elif kind == Material.FENCE:
            bars = ((u[sel] - g[sel, 0] - g[sel, 1]) % p[sel, 0]) < p[sel, 0] * 0.35
            bars |= z[sel] > g[sel, 5] - 0.08
            albedo[sel] = np.where(bars[:, None], albedo[sel], albedo[sel] * 0.35 + [0.05, 0.1, 0.04])
        elif kind == Material.LAMP and condition.lamps > 0:
            emission[sel[top[sel]]] = WARM_LIGHT * 2.5 * condition.lamps
        elif kind in (Material.PLAIN, Material.TRUNK, Material.METAL, Material.CLOTH):
            grain = value_noise(u[sel] * 3.0, z[sel] * 3.0, 1.0, key[sel])
            albedo[sel] *= (0.9 + 0.2 * grain)[:, None]
    if condition.snow:  # snow lies on every upward face (wall tops, hedges, car roofs)
        snowy = top & (z < 20.0) & (material != Material.LAMP) & (material != Material.SIGNAL)
        albedo[snowy] = SNOW
    return albedo, emission


def _facade(albedo, emission, sel, g, p, key, face, u, z, sky, condition) -> None:
    floor_h, spacing, win_w, win_h, shop, tint = (p[:, i] for i in range(6))
    rel = u - np.where(face == FACE_X, g[:, 1], g[:, 0])
    column = np.floor(rel / spacing)
    frac = rel - column * spacing - spacing / 2
    storey = np.floor(z / floor_h)
    in_storey = z - storey * floor_h
    sill = (floor_h - win_h) * 0.55
    vertical = face != FACE_HORIZONTAL
    window = (
        vertical
        & (np.abs(frac) < win_w / 2)
        & (in_storey > sill)
        & (in_storey < sill + win_h)
        & (storey >= 1)
        & (z < g[:, 5] - 0.6)
    )
    shopfront = vertical & (shop > 0.5) & (z > 0.35) & (z < 2.7) & (np.abs(frac) < spacing * 0.42)
    door = vertical & (shop < 0.5) & (column % 5 == 2) & (np.abs(frac) < 0.6) & (z < 2.2)
    base = albedo[sel] * (0.92 + 0.16 * value_noise(rel, z, 2.0, key))[:, None]
    base[z > g[:, 5] - 0.45] *= 0.75  # cornice
    base[~vertical] = (0.42, 0.41, 0.40)  # roof
    glass = GLASS[tint.astype(int)] + 0.35 * sky
    glassy = window | shopfront
    base[glassy] = glass[glassy]
    base[door] = (0.25, 0.17, 0.1)
    albedo[sel] = base
    if condition.lit_windows > 0:
        chance = hash01(column * 7 + storey * 131, face, key)
        lit = glassy & (chance < np.where(shopfront, 2.0 * condition.lit_windows, condition.lit_windows))
        strength = 0.6 + 0.6 * hash01(column, storey, key + 7)
        emission[sel[lit]] = WARM_LIGHT * strength[lit, None]


def _foliage(albedo, emission, sel, g, p, key, face, u, z, sky, condition) -> None:
    leaves = value_noise(u * 9.0, z * 4.0, 1.0, key) * 0.6 + hash01(u * 40, z * 25, key) * 0.4
    crown = p[:, 0] > 0.5
    shade = 0.65 + 0.55 * leaves
    if np.any(crown):  # crowns are lit from above and darker at their silhouette
        up = np.clip((z - g[:, 4]) / np.maximum(g[:, 3], 1e-3), -1, 1)
        shade = np.where(crown, shade * (0.85 + 0.2 * up) * (1 - 0.3 * u * u), shade)
    colour = albedo[sel] * shade[:, None]
    if condition.bare_trees:  # winter: branches, with the sky showing between them
        branches = np.array([0.33, 0.28, 0.25], dtype=np.float32) * (0.7 + 0.5 * leaves[:, None])
        gaps = (leaves > 0.45)[:, None] & crown[:, None]
        colour = np.where(crown[:, None], np.where(gaps, 0.85 * sky + 0.1, branches), colour)
    albedo[sel] = colour


def _car(albedo, emission, sel, g, p, key, face, u, z, sky, condition, camera_xy, cabin) -> None:
    axis, facing, body_top = p[:, 0], p[:, 1], p[:, 2]
    colour = albedo[sel]
    vertical = face != FACE_HORIZONTAL
    if cabin:
        colour = np.where(vertical[:, None], 0.12 + 0.3 * sky, colour)
    else:
        colour = np.where(((z < 0.45) & vertical)[:, None], 0.06, colour)  # wheels, bumper
        end_face = vertical & ((face == FACE_X) == (axis < 0.5))
        centre = np.where(face == FACE_X, (g[:, 1] + g[:, 3]) / 2, (g[:, 0] + g[:, 2]) / 2)
        half_w = np.where(face == FACE_X, g[:, 3] - g[:, 1], g[:, 2] - g[:, 0]) / 2
        lamp = (
            end_face
            & (np.abs(np.abs(u - centre) - half_w * 0.7) < half_w * 0.18)
            & (np.abs(z - (body_top - 0.22)) < 0.09)
        )
        car_centre = np.where(axis < 0.5, (g[:, 0] + g[:, 2]) / 2, (g[:, 1] + g[:, 3]) / 2)
        cam = np.where(axis < 0.5, camera_xy[0], camera_xy[1])
        sees_front = (facing > 0) == (cam > car_centre)
        light = np.where(sees_front[:, None], [[1.0, 0.95, 0.8]], [[0.9, 0.05, 0.03]])
        colour = np.where(lamp[:, None], light * 0.8, colour)
        if condition.lamps > 0:
            emission[sel[lamp]] = (light[lamp] * 3.0 * condition.lamps).astype(np.float32)
    albedo[sel] = colour


def _signal(albedo, emission, sel, g, p, key, face, u, z, sky, condition) -> None:
    centre = np.where(face == FACE_X, (g[:, 1] + g[:, 3]) / 2, (g[:, 0] + g[:, 2]) / 2)
    slot = np.clip(np.round((p[:, 0] + 0.3 - z) / 0.3), 0, 2)  # 0 top (red) .. 2 bottom
    dist = np.hypot(u - centre, z - (p[:, 0] + 0.3 - slot * 0.3))
    lens = (dist < 0.11) & (face != FACE_HORIZONTAL)
    active = slot == p[:, 1]
    colour = SIGNAL_COLOURS[slot.astype(int)]
    albedo[sel[lens]] = colour[lens] * np.where(active[lens], 1.0, 0.2)[:, None]
    on = lens & active
    emission[sel[on]] = colour[on] * 1.5


def _sign(albedo, emission, sel, g, p, key, face, u, z, sky, condition) -> None:
    centre = np.where(face == FACE_X, (g[:, 1] + g[:, 3]) / 2, (g[:, 0] + g[:, 2]) / 2)
    half = np.where(face == FACE_X, g[:, 3] - g[:, 1], g[:, 2] - g[:, 0]) / 2
    du, dz = (u - centre) / half, (z - (g[:, 4] + g[:, 5]) / 2) / ((g[:, 5] - g[:, 4]) / 2)
    ring = (p[:, 0] == 0) & (np.abs(np.hypot(du, dz) - 0.6) < 0.15)
    bar = (p[:, 0] == 1) & (np.abs(dz) < 0.2) & (np.abs(du) < 0.7)
    border = (p[:, 0] == 2) & (np.maximum(np.abs(du), np.abs(dz)) > 0.8)
    mark = (ring | bar | border) & (face != FACE_HORIZONTAL)
    albedo[sel[mark]] = np.where(albedo[sel[mark]].mean(axis=1, keepdims=True) > 0.7, 0.1, 0.95)
    # Retro-reflective plates glow in headlights and lamp light.
    emission[sel] = albedo[sel] * 0.25 * condition.lamps
