"""Capture conditions: they change how the town looks, never its geometry or labels.

The database is captured in `day`; queries in the others. Every image also gets a random
exposure, white-balance and gamma shift and sensor noise (`AppearanceShift`), so even two day
images of one place differ in colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Condition:
    """Lighting and weather parameters; colours are RGB in [0, 1]."""

    name: str
    sky_zenith: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    sun: float  # strength of directional light
    ambient: float  # strength of uniform light
    tint: tuple[float, float, float]
    sun_azimuth_deg: float = 35.0  # direction the light comes from (counter-clockwise from east)
    haze_m: float = 900.0  # fog e-folding distance in metres
    fog_colour: tuple[float, float, float] | None = None  # None: the sky horizon colour
    snow: bool = False
    bare_trees: bool = False
    lamps: float = 0.0  # street-lamp and headlight strength (0 off, 1 night)
    lit_windows: float = 0.0  # probability that a window is lit
    rain: bool = False
    exposure: tuple[float, float] = (0.9, 1.1)
    noise_sigma: float = 0.012


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("day", (0.30, 0.50, 0.85), (0.72, 0.82, 0.93), sun=0.55, ambient=0.55, tint=(1.0, 0.98, 0.94)),
        Condition(
            "dusk",
            (0.18, 0.18, 0.38),
            (0.95, 0.55, 0.32),
            sun=0.25,
            ambient=0.33,
            tint=(1.0, 0.72, 0.52),
            sun_azimuth_deg=200.0,
            haze_m=500.0,
            lamps=0.45,
            lit_windows=0.25,
            exposure=(0.8, 1.05),
        ),
        Condition(
            "night",
            (0.01, 0.012, 0.03),
            (0.05, 0.05, 0.09),
            sun=0.0,
            ambient=0.07,
            tint=(0.75, 0.8, 1.0),
            haze_m=400.0,
            lamps=1.0,
            lit_windows=0.35,
            exposure=(0.85, 1.25),
            noise_sigma=0.03,
        ),
        Condition(
            "winter",
            (0.62, 0.65, 0.70),
            (0.86, 0.87, 0.89),
            sun=0.18,
            ambient=0.78,
            tint=(0.95, 0.98, 1.04),
            haze_m=350.0,
            snow=True,
            bare_trees=True,
        ),
        Condition(
            "fog",
            (0.70, 0.72, 0.74),
            (0.74, 0.75, 0.77),
            sun=0.08,
            ambient=0.72,
            tint=(0.97, 0.98, 1.0),
            haze_m=38.0,
            fog_colour=(0.74, 0.75, 0.77),
        ),
        Condition(
            "rain",
            (0.36, 0.38, 0.42),
            (0.52, 0.54, 0.58),
            sun=0.04,
            ambient=0.55,
            tint=(0.9, 0.95, 1.02),
            haze_m=140.0,
            rain=True,
            lamps=0.25,
            lit_windows=0.1,
            exposure=(0.8, 1.0),
            noise_sigma=0.02,
        ),
    )
}
DATABASE_CONDITION = "day"
DEFAULT_QUERY_CONDITIONS = ("dusk", "night", "winter", "fog")


def get_condition(name: str) -> Condition:
    """The condition called `name`; ValueError listing the known names otherwise."""
    if name not in CONDITIONS:
        raise ValueError(f"unknown condition {name!r}; known: {', '.join(CONDITIONS)}")
    return CONDITIONS[name]


@dataclass(frozen=True)
class AppearanceShift:
    """Per-image camera response: gain, per-channel white balance, gamma, noise seed."""

    gain: float
    white_balance: tuple[float, float, float]
    gamma: float

    @staticmethod
    def draw(condition: Condition, rng: np.random.Generator) -> AppearanceShift:
        exposure = float(rng.uniform(*condition.exposure))
        red, green, blue = (float(v) for v in rng.uniform(0.94, 1.06, 3))
        return AppearanceShift(exposure, (red, green, blue), float(rng.uniform(0.9, 1.1)))
